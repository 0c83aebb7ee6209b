"""Dogs vs. Cats (Kaggle competition): one flat ``train/`` folder, the label in each file name."""

from __future__ import annotations

import os
import re
from pathlib import Path

from image_classifier.data.sources.base import Candidate, Collected, PrepareSettings
from image_classifier.data.sources.kaggle import kaggle_download
from image_classifier.data.sources.prepare import DatasetSource
from image_classifier.data.sources.splits import stratified_split
from image_classifier.errors import DataError

HANDLE = "dogs-vs-cats"
PAGE = f"https://www.kaggle.com/competitions/{HANDLE}/data"
LABELLED = re.compile(r"^(cat|dog)\.\d+\.[a-z0-9]+$", re.IGNORECASE)
CLASSES: list[str] = ["cat", "dog"]


def fetch(dest: Path, settings: PrepareSettings) -> None:
    kaggle_download(HANDLE, dest, dataset="cats_vs_dogs", page=PAGE, competition=True)


def _labelled_folder(raw: Path) -> Path:
    """The folder with the most ``cat.N.jpg`` / ``dog.N.jpg`` files (the competition's ``train/``)."""
    best, best_count = None, 0
    for folder, _, files in os.walk(raw):
        count = sum(1 for name in files if LABELLED.match(name))
        if count > best_count:
            best, best_count = Path(folder), count
    if best is None:
        raise DataError(
            f"No cat.N.jpg / dog.N.jpg files under {raw}: pass --source with the competition's train.zip "
            "(or the competition zip that contains it) or its unpacked train/ folder."
        )
    return best


def collect(raw: Path, settings: PrepareSettings) -> Collected:
    """Labels from the file names; seeded stratified train/val/test."""
    folder = _labelled_folder(raw)
    labelled: list[tuple[Path, str]] = []
    skipped: list[dict[str, str]] = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        match = LABELLED.match(path.name)
        if match:
            labelled.append((path, match.group(1).lower()))
        else:
            skipped.append({"path": path.relative_to(raw).as_posix(), "reason": "no cat/dog label in the file name"})
    fractions = {"val": settings.val_fraction, "test": settings.test_fraction}
    splits = stratified_split([(path.name, label) for path, label in labelled], fractions, settings.seed, "train")
    candidates = [
        Candidate(splits[path.name], label, path.relative_to(raw).as_posix(), path, path.name)
        for path, label in labelled
    ]
    return Collected(classes=CLASSES, candidates=candidates, skipped=skipped)


SOURCE = DatasetSource(
    name="cats_vs_dogs",
    title="Dogs vs. Cats (Kaggle competition)",
    homepage=PAGE,
    license="The Kaggle competition's rules (accept them on its page); images from Petfinder.com via Asirra",
    fetch=fetch,
    collect=collect,
    nested_archives=("train.zip",),
)
