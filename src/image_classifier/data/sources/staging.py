"""Directories that appear complete or not at all: build beside, then rename into place."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty sibling of ``target``; on success it replaces ``target``, on any failure it is removed."""
    target = Path(target)
    new_parent = not target.parent.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if new_parent and not any(target.parent.iterdir()):
            target.parent.rmdir()
