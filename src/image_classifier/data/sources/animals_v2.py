"""Animals-V2 (Kaggle): ten animal classes in ``Training/Validation/Testing Data/<Class>/`` folders.

The Kaggle page now serves "Animal Species Classification - V3" (15 classes, ~20 GB) with the old
``Animal-Data-V2`` tree inside it; only that 10-class tree is taken (see :func:`pick_tree`).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from image_classifier.data.sources.base import Candidate, Collected, PrepareSettings
from image_classifier.data.sources.folders import class_files, holds_class_folders
from image_classifier.data.sources.kaggle import kaggle_download
from image_classifier.data.sources.prepare import DatasetSource
from image_classifier.data.sources.splits import stratified_split
from image_classifier.errors import DataError

# Not pinned to a version: kagglehub takes "owner/dataset/versions/N", and version 4 is known to serve V3
# (15 classes), but which earlier version last served V2 cannot be checked from here. So the latest version
# is downloaded and collect() picks the V2 tree out of it.
HANDLE = "utkarshsaxenadn/animal-image-classification-dataset"
PAGE = f"https://www.kaggle.com/datasets/{HANDLE}"
SPLIT_FOLDERS: dict[str, str] = {"train": "Training Data", "val": "Validation Data", "test": "Testing Data"}
V2_CLASSES = frozenset({"Cat", "Cow", "Dog", "Elephant", "Gorilla", "Hippo", "Monkey", "Panda", "Tiger", "Zebra"})
V2_FOLDER = re.compile(r"animals?[-_ ]?data[-_ ]?v2", re.IGNORECASE)
"""Folder names like ``Animal-Data-V2`` (how the V2 tree is called inside the V3 download)."""


def fetch(dest: Path, settings: PrepareSettings) -> None:
    """Download the dataset's latest version (now V3, the V2 tree inside it) into ``dest``."""
    kaggle_download(HANDLE, dest, dataset="animals_v2", page=PAGE)


def split_folder(tree: Path, name: str) -> Path | None:
    """``tree/name/name`` (Kaggle's doubled nesting) or ``tree/name``, whichever holds class folders."""
    return next((path for path in (tree / name / name, tree / name) if holds_class_folders(path)), None)


def candidate_trees(raw: Path) -> list[Path]:
    """Every folder under ``raw`` that holds a train folder with classes (the folder above any doubled nesting)."""
    name = SPLIT_FOLDERS["train"]
    trains = [
        path
        for path in raw.rglob(name)
        if holds_class_folders(path)
        and not any(part.startswith(".") or part == "__MACOSX" for part in path.relative_to(raw).parts)
    ]
    return sorted(
        {path.parent.parent if path.parent.name == name and path.parent != raw else path.parent for path in trains}
    )


def train_classes(tree: Path) -> set[str]:
    """The class folder names of a tree's train folder."""
    folder = split_folder(tree, SPLIT_FOLDERS["train"])
    return set(class_files(folder)) if folder is not None else set()


def looks_like_v2(tree: Path, raw: Path, alone: bool) -> bool:
    """No class outside V2, and: named like ``Animal-Data-V2``, or exactly the ten V2 classes, or the only tree."""
    classes = train_classes(tree)
    named = any(V2_FOLDER.fullmatch(part) for part in tree.relative_to(raw).parts)
    return bool(classes) and classes <= V2_CLASSES and (named or classes == V2_CLASSES or alone)


def describe(trees: list[Path], raw: Path) -> str:
    """``'A' (10 classes), 'B' (15 classes)``: the candidate folders, relative to ``raw``, for an error message."""
    return ", ".join(f"'{tree.relative_to(raw).as_posix()}' ({len(train_classes(tree))} classes)" for tree in trees)


def pick_tree(raw: Path) -> Path:
    """The one V2 tree under ``raw``; V3 and other trees beside or around it are ignored. ``DataError`` if unclear."""
    trees = candidate_trees(raw)
    if not trees:
        raise DataError(
            f"No '{SPLIT_FOLDERS['train']}' folder with class subfolders under {raw}: pass --source with the "
            "Kaggle zip or its unpacked folder (Training Data/, Validation Data/, Testing Data/)."
        )
    v2 = [tree for tree in trees if looks_like_v2(tree, raw, alone=len(trees) == 1)]
    if len(v2) == 1:
        return v2[0]
    hint = "pass --source with just the Animal-Data-V2 folder (or its zip)"
    if v2:
        raise DataError(
            f"Cannot tell which folder under {raw} is Animals-V2: {describe(v2, raw)} all look like it; {hint}."
        )
    wanted = ", ".join(sorted(V2_CLASSES))
    raise DataError(f"No Animals-V2 tree ({wanted}) under {raw}, only {describe(trees, raw)}; {hint}.")


def collect(raw: Path, settings: PrepareSettings) -> Collected:
    """The V2 tree's own train/val/test; a seeded stratified val is carved from train only if val is missing."""
    tree = pick_tree(raw)
    folders = {split: split_folder(tree, name) for split, name in SPLIT_FOLDERS.items()}
    candidates: list[Candidate] = []
    classes: set[str] = set()
    for split, folder in folders.items():
        if folder is None:
            continue
        for label, files in class_files(folder).items():
            classes.add(label)
            candidates += [Candidate(split, label, path.relative_to(raw).as_posix(), path, path.name) for path in files]
    if folders["val"] is None:
        train = [c for c in candidates if c.split == "train"]
        splits = stratified_split(
            [(c.origin, c.label) for c in train], {"val": settings.val_fraction}, settings.seed, "train"
        )
        candidates = [replace(c, split=splits[c.origin]) if c.split == "train" else c for c in candidates]
    return Collected(classes=sorted(classes), candidates=candidates)


SOURCE = DatasetSource(
    name="animals_v2",
    title="Animals-V2 (Animal Image Classification Dataset)",
    homepage=PAGE,
    license="As published on its Kaggle page by utkarshsaxenadn (check the page before redistributing)",
    fetch=fetch,
    collect=collect,
)
