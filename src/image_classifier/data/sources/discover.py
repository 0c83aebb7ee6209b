"""Find the photos, their classes and their splits in a user's folder, whatever its layout.

Accepted: a folder of class folders; a folder of split folders (``train``, ``val``, ``test`` and their
synonyms) each holding class folders; either inside any number of single wrapper folders (as archives
often add); or a CSV/TSV list of ``path,label[,split]`` rows (:mod:`.photo_list`). Hidden files, system
files and ``__MACOSX`` are skipped and counted, as are photos outside any class folder.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from image_classifier.data.sources.packed import PackedStrings
from image_classifier.data.sources.user_names import (
    ACCEPTED_SPLITS,
    COPY_RECORD,
    LIST_SUFFIXES,
    folder_split_of,
    ignored_reason,
    is_image_name,
    is_unlabelled_name,
    split_of,
)
from image_classifier.errors import DataError

ACCEPTED_LAYOUTS = (
    "accepted: a folder of class folders, a folder of train/val/test folders of class folders, "
    "a .zip/.tar/.tar.gz/.tgz of either, or a CSV/TSV of path,label[,split] rows"
)


@dataclass
class Found:
    """What a source holds: its layout, its photos (as columns, so memory stays small for many photos), and the
    entries skipped before any is opened.

    Photo ``i`` is ``origins[i]`` (its path relative to the source), of class ``labels[i]``, in split
    ``splits[i]`` (None: to be assigned).
    """

    layout: str
    origins: PackedStrings = field(default_factory=PackedStrings)
    labels: list[str] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.origins)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def add(self, split: str | None, label: str, origin: str) -> None:
        """Add a photo; its path is packed and its label and split interned: some 40 bytes a photo."""
        self.origins.append(origin)
        self.labels.append(sys.intern(label))
        self.splits.append(split)

    def skip(self, path: Path, root: Path, reason: str, folder: bool = False) -> None:
        relative = path.relative_to(root).as_posix() + ("/" if folder else "")
        self.skipped.append({"path": relative, "reason": reason})


@dataclass
class Listing:
    """The visible folders and files directly in a folder, and the entries that are ignored."""

    folders: list[Path]
    files: list[str]
    """File names (not paths: a class folder may hold many thousands)."""
    ignored: list[tuple[Path, str, bool]]


def list_folder(folder: Path) -> Listing:
    listing = Listing([], [], [])
    with os.scandir(folder) as scan:
        entries = sorted((entry.name, entry.is_dir(), entry.is_file()) for entry in scan)
    for name, is_folder, is_file in entries:
        if name == COPY_RECORD:
            continue
        reason = ignored_reason(name, is_folder)
        if reason is not None:
            listing.ignored.append((folder / name, reason, is_folder))
        elif is_folder:
            listing.folders.append(folder / name)
        elif is_file:
            listing.files.append(name)
    return listing


def is_list_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in LIST_SUFFIXES


def has_files(folder: Path) -> bool:
    """Whether any visible file is under ``folder``, at any depth."""
    for _, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if ignored_reason(name, True) is None]
        if any(ignored_reason(name, False) is None for name in files):
            return True
    return False


def photo_root(raw: Path, found: Found) -> Path:
    """``raw``, or the folder inside single wrapper folders (``photos.zip`` -> ``photos/``) that holds the photos."""
    top = raw
    while True:
        listing = list_folder(top)
        inner = listing.folders[0] if len(listing.folders) == 1 else None
        if (
            inner is None
            or any(is_image_name(name) for name in listing.files)
            or any(is_list_name(name) for name in listing.files)
            or split_name(inner) is not None
            or not list_folder(inner).folders
        ):
            return top
        for path, reason, is_folder in listing.ignored:
            found.skip(path, raw, reason, is_folder)
        for name in listing.files:
            found.skip(top / name, raw, "not an image, outside the photo folders")
        top = inner


def class_folder_items(folder: Path, split: str | None, raw: Path, found: Found) -> list[str]:
    """Add the photos directly in class folder ``folder``; the names of its subfolders that hold files."""
    listing = list_folder(folder)
    for path, reason, is_folder in listing.ignored:
        found.skip(path, raw, reason, is_folder)
    prefix = folder.relative_to(raw).as_posix()
    for name in listing.files:
        if is_image_name(name):
            found.add(split, folder.name, f"{prefix}/{name}")
        else:
            found.skip(folder / name, raw, f"not an image ({os.path.splitext(name)[1].lower() or 'no suffix'})")
    nested = [sub for sub in listing.folders if has_files(sub)]
    for sub in nested:
        for deeper, folders, files in os.walk(sub):
            folders[:] = [name for name in sorted(folders) if ignored_reason(name, True) is None]
            for name in sorted(files):
                if ignored_reason(name, False) is None:
                    found.skip(Path(deeper) / name, raw, f"nested deeper than its class folder '{folder.name}'")
    return [sub.name for sub in nested]


def add_class_folders(parent: Path, split: str | None, raw: Path, found: Found) -> int:
    """Add the photos of the class folders in ``parent``; how many class folders it has."""
    listing = list_folder(parent)
    for path, reason, is_folder in listing.ignored:
        found.skip(path, raw, reason, is_folder)
    for name in listing.files:
        found.skip(parent / name, raw, "not in a class folder")
    classes = [folder for folder in listing.folders if has_files(folder)]
    for folder in listing.folders:
        if folder not in classes:
            found.skip(folder, raw, "empty folder", folder=True)
    nested_only: dict[str, list[str]] = {}
    for folder in classes:
        before = len(found)
        subfolders = class_folder_items(folder, split, raw, found)
        if len(found) == before and subfolders:
            nested_only[folder.name] = subfolders
    if nested_only:
        where = "; ".join(f"'{name}' holds {', '.join(subs[:4])}" for name, subs in nested_only.items())
        raise DataError(
            f"Class folders nested deeper than expected in {parent}: {where} (folders, not photos). "
            "Pass the folder that holds one folder of photos per class."
        )
    return len(classes)


def split_name(folder: Path) -> str | None:
    """The split ``folder`` holds: named exactly (``valid``), or loosely (``seg_train``) when it holds folders."""
    exact = split_of(folder.name)
    if exact is not None or folder_split_of(folder.name) is None:
        return exact
    return folder_split_of(folder.name) if list_folder(folder).folders else None


def split_folders(top: Path, raw: Path, found: Found) -> dict[str, Path]:
    """The split folders in ``top`` by split; an error if other folders sit beside them or a split is doubled.

    A folder of photos to predict beside them (``seg_pred``, ``unlabelled``) is skipped: it has no labels.
    """
    listing = list_folder(top)
    named = {folder: split_name(folder) for folder in listing.folders}
    splits = {folder: split for folder, split in named.items() if split is not None}
    if not splits:
        return {}
    unlabelled = [f for f, split in named.items() if split is None and is_unlabelled_name(f.name) and has_files(f)]
    for folder in unlabelled:
        found.skip(folder, raw, "unlabelled photos (a folder to predict, beside the splits)", folder=True)
    others = [f.name for f, split in named.items() if split is None and f not in unlabelled and has_files(f)]
    if others:
        raise DataError(
            f"Cannot read {top}: it mixes split folders ({', '.join(sorted(f.name for f in splits))}) with other "
            f"folders ({', '.join(others[:5])}); {ACCEPTED_LAYOUTS}."
        )
    by_split: dict[str, Path] = {}
    for folder, split in splits.items():
        if split in by_split:
            raise DataError(
                f"Two folders in {top} name the {split} split: '{by_split[split].name}' and '{folder.name}'."
            )
        by_split[split] = folder
    return by_split


def undoubled(folder: Path, split: str) -> Path:
    """``train/train`` (a doubled nesting some archives have) -> the inner folder."""
    listing = list_folder(folder)
    if len(listing.folders) == 1 and not listing.files and split_name(listing.folders[0]) == split:
        return listing.folders[0]
    return folder


def find_photos(raw: Path) -> Found:
    """The layout of the folder ``raw`` and the photos in it; a one-line error when it cannot be read."""
    found = Found(layout="class folders")
    top = photo_root(raw, found)
    splits = split_folders(top, raw, found)
    if splits:
        found.layout = f"split folders ({', '.join(split for split in ('train', 'val', 'test') if split in splits)})"
        listing = list_folder(top)
        for path, reason, is_folder in listing.ignored:
            found.skip(path, raw, reason, is_folder)
        for name in listing.files:
            found.skip(top / name, raw, "not in a class folder")
        for split, folder in splits.items():
            add_class_folders(undoubled(folder, split), split, raw, found)
        return found
    listing = list_folder(top)
    if not any(has_files(folder) for folder in listing.folders):
        lists = [top / name for name in listing.files if is_list_name(name)]
        if len(lists) == 1:
            from image_classifier.data.sources.photo_list import read_photo_list

            return read_photo_list(lists[0], raw)
        photos = sum(1 for name in listing.files if is_image_name(name))
        if photos:
            raise DataError(
                f"{photos} photos in {top} but no class folders: put each class's photos in a folder named "
                f"after the class, or pass a CSV of path,label rows; {ACCEPTED_LAYOUTS}."
            )
        raise DataError(f"No photos in {top}: {ACCEPTED_LAYOUTS}.")
    add_class_folders(top, None, raw, found)
    return found


def check_classes(found: Found, source: Path) -> None:
    """At least two classes, and every class of val and test also in train."""
    classes = found.classes
    if not classes:
        raise DataError(f"No photos found in {source}: {ACCEPTED_LAYOUTS}.")
    if len(classes) < 2:
        raise DataError(
            f"Only one class ('{classes[0]}') in {source}: a classifier needs at least two, "
            "one folder (or label) per class."
        )
    if any(split is not None for split in found.splits):
        pairs = set(zip(found.labels, found.splits, strict=True))
        trained = {label for label, split in pairs if split in (None, "train")}
        missing = sorted({f"'{label}' ({split})" for label, split in pairs if label not in trained})
        if missing:
            raise DataError(f"Classes with photos in val/test but none in train: {', '.join(missing[:5])}.")


__all__ = ["ACCEPTED_LAYOUTS", "ACCEPTED_SPLITS", "Found", "check_classes", "find_photos"]
