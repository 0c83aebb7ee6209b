"""Waiting for a file that a running job rewrites by renaming a new file into place (a checkpoint)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path


def file_version(path: Path) -> tuple[int, int]:
    """Which write of ``path`` is there: inode and modification time (a rename's inode may be one used before)."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def wait_for_rewrites(
    path: Path, count: int, running: Callable[[], bool], *, poll_s: float = 0.002, timeout_s: float | None = None
) -> bool:
    """True once ``path`` has been written ``count`` times; False as soon as ``running()`` says the job ended.

    Raises TimeoutError after ``timeout_s`` (no limit when None).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    seen: set[tuple[int, int]] = set()
    while len(seen) < count:
        if not running():
            return False
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"{path} was written {len(seen)} of {count} times in {timeout_s} s")
        with contextlib.suppress(FileNotFoundError):
            seen.add(file_version(path))
        time.sleep(poll_s)
    return True
