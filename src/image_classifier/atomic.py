"""Files and directories that appear complete or not at all: written beside, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    prefix, suffix = f".{target.name}.", ".partial"
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
        _move_into_place(staging, target, overwrite)
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
