"""The names in a user's photo collection: split folder synonyms, class names, dataset names, files to ignore."""

from __future__ import annotations

import re

from image_classifier.errors import DataError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
)
"""File suffixes (any case) read as photos; other files are skipped as not images."""
LIST_SUFFIXES: frozenset[str] = frozenset({".csv", ".tsv"})
SYSTEM_FILES: frozenset[str] = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
SYSTEM_FOLDERS: frozenset[str] = frozenset({"__macosx", "@eadir", "$recycle.bin", "system volume information"})
SPLIT_SYNONYMS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
_SPLIT_FOLDER = re.compile(
    r"^(?P<split>" + "|".join(SPLIT_SYNONYMS) + r")([-_ ]?(data|set|images|imgs))?$", re.IGNORECASE
)
ACCEPTED_SPLITS = "train, val, test (or training, valid, validation, testing)"
DATASET_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
RESERVED_NAMES: frozenset[str] = frozenset({"default", "report"})


def split_of(name: str) -> str | None:
    """The split a folder or a CSV cell names (``Training Data`` -> ``train``); None if it names none."""
    match = _SPLIT_FOLDER.match(name.strip())
    return SPLIT_SYNONYMS[match.group("split").lower()] if match else None


UNLABELLED_WORDS = frozenset({"pred", "predict", "prediction", "predictions", "unlabeled", "unlabelled", "unknown"})


def folder_split_of(name: str) -> str | None:
    """The split a folder of class folders names: as :func:`split_of`, or by its first or last word when the
    words are joined by ``_`` or ``-`` (``seg_train``, ``train-2024``)."""
    exact = split_of(name)
    if exact is not None:
        return exact
    words = [word for word in re.split(r"[-_]+", name.lower()) if word]
    found = {SPLIT_SYNONYMS[word] for word in (words[:1] + words[-1:]) if word in SPLIT_SYNONYMS}
    return found.pop() if len(words) > 1 and len(found) == 1 else None


def is_unlabelled_name(name: str) -> bool:
    """A folder of photos to predict, as datasets ship beside their splits (``seg_pred``, ``unlabelled``)."""
    return any(word in UNLABELLED_WORDS for word in re.split(r"[-_ ]+", name.lower()))


def is_image_name(name: str) -> bool:
    return any(name.lower().endswith(suffix) for suffix in IMAGE_SUFFIXES)


COPY_RECORD = ".import-skipped.json"
"""In ``raw/NAME``: what the copy from the source left out, and why (so preparing again reports it too)."""


def ignored_reason(name: str, folder: bool) -> str | None:
    """Why a file or folder is not part of the photos (hidden, system, macOS metadata); None if it may be."""
    if folder and name.lower() in SYSTEM_FOLDERS:
        return "macOS archive metadata" if name == "__MACOSX" else "system folder"
    if name.startswith("."):
        return "hidden folder" if folder else "hidden file"
    if not folder and name.lower() in SYSTEM_FILES:
        return "system file"
    return None


def class_name_problem(label: str) -> str | None:
    """Why ``label`` cannot be a class folder's name; None when it can (Unicode and spaces are fine)."""
    if not label:
        return "it is empty"
    if label in (".", ".."):
        return f"'{label}' is not a folder name"
    if label.startswith("."):
        return "it starts with '.', which would make a hidden folder"
    if any(char in label for char in "/\\\0") or any(ord(char) < 32 for char in label):
        return "it contains a path separator or a control character"
    if len(label.encode()) > 255:
        return "it is longer than 255 bytes"
    return None


def check_class_name(label: str, where: str) -> None:
    problem = class_name_problem(label)
    if problem is not None:
        raise DataError(f"Class name {label!r} ({where}) cannot be a folder name: {problem}.")


def check_dataset_name(name: str) -> None:
    """A name a user's dataset can take: a config file, a folder and a Hydra choice (``data=NAME``)."""
    if not DATASET_NAME.match(name) or name in RESERVED_NAMES:
        raise DataError(
            f"'{name}' cannot name a dataset: use a letter, then letters, digits, '_' or '-' (at most 64), "
            f"and not {' or '.join(sorted(RESERVED_NAMES))}."
        )
