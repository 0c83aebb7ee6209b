"""Copy what the user has (a folder, an archive, or a photo list and its files) into ``raw/NAME``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from image_classifier.data.sources.archive import is_archive, unpack
from image_classifier.data.sources.decode import default_workers
from image_classifier.data.sources.discover import ACCEPTED_LAYOUTS
from image_classifier.data.sources.photo_list import listed_files
from image_classifier.data.sources.user_names import LIST_SUFFIXES, ignored_reason
from image_classifier.errors import DataError


def source_kind(source: Path) -> str:
    """``folder``, ``list`` or ``archive``; a one-line error for anything else."""
    if not source.exists():
        raise DataError(f"--source {source} does not exist.")
    if source.is_dir():
        return "folder"
    if source.suffix.lower() in LIST_SUFFIXES:
        return "list"
    if is_archive(source):
        return "archive"
    raise DataError(f"--source {source} is not a folder, an archive or a CSV/TSV list; {ACCEPTED_LAYOUTS}.")


def copy_source(source: Path, dest: Path, threads: int = 0) -> list[dict[str, str]]:
    """Copy ``source`` into the empty folder ``dest`` (a folder on ``threads`` threads, 0: one per core); the
    entries that could not be copied, with reasons."""
    kind = source_kind(source)
    if kind == "archive":
        unpack(source, dest)
        return []
    if kind == "list":
        return copy_list(source, dest)
    return copy_tree(source, dest, threads)


def copy_tree(source: Path, dest: Path, threads: int = 0) -> list[dict[str, str]]:
    """Copy the folder ``source``, following links but not into a loop; hidden and system folders are left out.

    Folders are copied on one thread per core, each thread a whole folder at a time (the copies run in the
    kernel, outside the GIL, and files created in one folder would wait on each other).
    """
    skipped: list[dict[str, str]] = []
    folders = list(folders_to_copy(source, skipped))
    with ThreadPoolExecutor(threads or default_workers()) as pool:
        for problems in pool.map(lambda relative: copy_folder(source, dest, relative), folders):
            skipped += problems
    skipped.sort(key=lambda entry: entry["path"])
    return skipped


def folders_to_copy(source: Path, skipped: list[dict[str, str]]) -> Iterator[Path]:
    """Each folder under ``source`` (itself first) to copy, relative to it; loops, hidden and system folders
    are noted in ``skipped`` instead."""
    seen: set[tuple[int, int]] = set()
    for folder, folders, _ in os.walk(source, followlinks=True):
        relative = Path(folder).relative_to(source)
        status = os.stat(folder)
        if (status.st_dev, status.st_ino) in seen:
            skipped.append({"path": f"{relative.as_posix()}/", "reason": "symlink loop (a folder already read)"})
            folders[:] = []
            continue
        seen.add((status.st_dev, status.st_ino))
        for name in sorted(folders):
            reason = ignored_reason(name, True)
            if reason is not None:
                skipped.append({"path": f"{(relative / name).as_posix()}/", "reason": reason})
        folders[:] = sorted(name for name in folders if ignored_reason(name, True) is None)
        yield relative


def copy_folder(source: Path, dest: Path, relative: Path) -> list[dict[str, str]]:
    """Copy the files directly in ``source/relative``; the ones that could not be copied, with reasons."""
    skipped = []
    (dest / relative).mkdir(parents=True, exist_ok=True)
    with os.scandir(source / relative) as entries:
        names = sorted(entry.name for entry in entries if not entry.is_dir())
    for name in names:
        try:
            shutil.copyfile(source / relative / name, dest / relative / name)
        except OSError as error:
            broken = os.path.islink(source / relative / name)
            reason = "broken symlink" if broken else f"unreadable: {error.strerror}"
            skipped.append({"path": (relative / name).as_posix(), "reason": reason})
    return skipped


def copy_list(list_file: Path, dest: Path) -> list[dict[str, str]]:
    """Copy the list and every file it names that exists (missing ones are skipped when it is read)."""
    folder = list_file.parent
    for relative in listed_files(list_file):
        path = folder / relative
        if path.is_file():
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / relative)
    shutil.copyfile(list_file, dest / list_file.name)
    return []
