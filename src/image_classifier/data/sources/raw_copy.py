"""Copy what the user has (a folder, an archive, or a photo list and its files) into ``raw/NAME``."""

from __future__ import annotations

import os
import queue
import shutil
import threading
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


def copy_source(source: Path, dest: Path) -> list[dict[str, str]]:
    """Copy ``source`` into the empty folder ``dest``; the entries that could not be copied, with reasons."""
    kind = source_kind(source)
    if kind == "archive":
        unpack(source, dest)
        return []
    if kind == "list":
        return copy_list(source, dest)
    return copy_tree(source, dest)


def copy_tree(source: Path, dest: Path) -> list[dict[str, str]]:
    """Copy the folder ``source``, following links but not into a loop; hidden and system folders are left out.

    Files are copied on one thread per core (the copies run in the kernel, outside the GIL).
    """
    skipped: list[dict[str, str]] = []
    seen: set[tuple[int, int]] = set()
    with FileCopier(skipped) as copier:
        for folder, folders, files in os.walk(source, followlinks=True):
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
            (dest / relative).mkdir(parents=True, exist_ok=True)
            for name in sorted(files):
                copier.copy(f"{folder}/{name}", f"{dest / relative}/{name}", (relative / name).as_posix())
    skipped.sort(key=lambda entry: entry["path"])
    return skipped


class FileCopier:
    """Copies files on background threads, a bounded queue ahead; a file that cannot be copied is noted in
    ``skipped`` with its reason."""

    def __init__(self, skipped: list[dict[str, str]], threads: int = 0) -> None:
        self.skipped = skipped
        self.queue: queue.Queue[tuple[str, str, str] | None] = queue.Queue(maxsize=256)
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads or default_workers())]

    def __enter__(self) -> FileCopier:
        for thread in self.threads:
            thread.start()
        return self

    def copy(self, source: str, target: str, shown: str) -> None:
        self.queue.put((source, target, shown))

    def _work(self) -> None:
        while (task := self.queue.get()) is not None:
            source, target, shown = task
            try:
                shutil.copyfile(source, target)
            except OSError as error:
                reason = "broken symlink" if os.path.islink(source) else f"unreadable: {error.strerror}"
                self.skipped.append({"path": shown, "reason": reason})

    def __exit__(self, *exc_info: object) -> None:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()


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
