"""Animals-V2 (Kaggle): ten animal classes in ``Training/Validation/Testing Data/<Class>/`` folders."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from image_classifier.data.sources.base import Candidate, Collected, DatasetSource, PrepareSettings
from image_classifier.data.sources.folders import class_files, find_class_folder
from image_classifier.data.sources.kaggle import kaggle_download
from image_classifier.data.sources.splits import stratified_split
from image_classifier.errors import DataError

HANDLE = "utkarshsaxenadn/animal-image-classification-dataset"
PAGE = f"https://www.kaggle.com/datasets/{HANDLE}"
SPLIT_FOLDERS: dict[str, str] = {"train": "Training Data", "val": "Validation Data", "test": "Testing Data"}


def fetch(dest: Path, settings: PrepareSettings) -> None:
    kaggle_download(HANDLE, dest, dataset="animals_v2", page=PAGE)


def collect(raw: Path, settings: PrepareSettings) -> Collected:
    """The source's own train/val/test; a seeded stratified val is carved from train only if val is missing."""
    folders = {split: find_class_folder(raw, name) for split, name in SPLIT_FOLDERS.items()}
    train_folder = folders["train"]
    if train_folder is None:
        raise DataError(
            f"No '{SPLIT_FOLDERS['train']}' folder with class subfolders under {raw}: pass --source with the "
            "Kaggle zip or its unpacked folder (Training Data/, Validation Data/, Testing Data/)."
        )
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
