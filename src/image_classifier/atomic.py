"""Files and directories that appear complete or not at all: written beside, then renamed into place.

A file is flushed to disk (``fsync``) before it is renamed, and its directory after, so that a crash leaves
the old file or the new one, never an empty one. The sibling being written is named
``.NAME.PID.XXXXXXXX.partial`` after the process writing it; one left by a process that was killed (SIGKILL,
power loss) is removed by the next write of the same target, once that process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PARTIAL = ".partial"


@contextmanager
def atomic_path(target: Path | str, directory: bool = False, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a fresh sibling of ``target`` to write (a file, or an empty directory when ``directory``).

    When the block succeeds it replaces ``target``; an existing directory is first renamed aside, so
    ``target`` is never seen half deleted. With ``overwrite=False`` a ``target`` that exists by then
    (another writer finished first) is kept and what the block wrote is discarded. When the block
    fails (an exception or an interrupt) its sibling is removed, ``target`` is left as it was, and
    so are the parents: those created for it are removed again if nothing else was put in them.
    """
    target = Path(target)
    created = [parent for parent in target.parents if not parent.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    prefix, suffix = f".{target.name}.{os.getpid()}.", PARTIAL
    if directory:
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix, suffix=suffix))
    else:
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
        os.close(handle)
        staging = Path(name)
    done = False
    try:
        yield staging
        staging.chmod(0o755 if directory else 0o644)  # not mkstemp's 0600: a shared checkout reads these
        if not directory:
            _fsync(staging)
        _move_into_place(staging, target, overwrite)
        _fsync(target.parent)
        done = True
    finally:
        _remove(staging)
        for parent in created if not done else ():  # deepest first
            with contextlib.suppress(OSError):  # not empty: someone else writes there too
                parent.rmdir()


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    """Rename ``staging`` onto ``target`` (see :func:`atomic_path` for what happens to an existing one)."""
    if not overwrite:
        if not target.exists():
            try:
                os.replace(staging, target)
            except OSError:
                if not target.exists():  # not a directory another writer renamed there first
                    raise
        return
    old = staging.with_suffix(".old")
    try:
        if staging.is_dir() and target.is_dir():
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException:
        if old.exists() and not target.exists():  # interrupted between the two renames: put the old one back
            os.replace(old, target)
        raise
    _remove(old)


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a directory's entries) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _writer_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this one always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(target: Path | str) -> list[Path]:
    """Remove the siblings (``.partial``, and ``.old`` of a directory swap) that writes of ``target`` left behind
    when their process was killed; those of a process still running are kept. Returns what was removed."""
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(\d+)\.[A-Za-z0-9_]+\.(partial|old)$")
    removed = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            match = pattern.match(entry.name)
            if match and not _writer_alive(int(match[1])):
                _remove(entry)
                removed.append(entry)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_text_atomic(target: Path | str, text: str) -> Path:
    """Write ``text`` to ``target`` atomically; returns ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)
