"""Files and directories that appear complete or not at all: written beside, then renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path | str, directory: bool = False) -> Iterator[Path]:
    """Yield a fresh sibling of ``target`` to write (a file, or an empty directory when ``directory``).

    When the block succeeds it replaces ``target`` (an existing directory is removed first); when the
    block fails it is removed and ``target`` is left as it was. Parents are created as needed.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{target.name}.", ".partial"
    if directory:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=suffix))
    else:
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
        os.close(handle)
        staging = Path(name)
    try:
        yield staging
        staging.chmod(0o755 if directory else 0o644)  # not mkstemp's 0600: a shared checkout reads these
        if directory and target.is_dir():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)


def write_text_atomic(target: Path | str, text: str) -> Path:
    """Write ``text`` to ``target`` atomically; returns ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)
