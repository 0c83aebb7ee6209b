"""Splits for a user's photos: the source's own are kept, missing ones carved out seeded and stratified.

Photos are numbered (their place in :class:`~image_classifier.data.sources.discover.Found`), and splits are
codes into :data:`~image_classifier.data.layout.SPLITS`, so thousands of photos cost a few bytes each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from image_classifier.data.layout import SPLITS
from image_classifier.data.sources.base import PrepareSettings
from image_classifier.data.sources.splits import carve
from image_classifier.errors import DataError

UNASSIGNED = -1


def carved_fractions(given: set[str], settings: PrepareSettings) -> dict[str, float]:
    """The splits the source lacks, with the fraction of each class's train photos they take."""
    wanted = {"val": settings.val_fraction, "test": settings.test_fraction}
    return {split: fraction for split, fraction in wanted.items() if split not in given and fraction > 0}


def given_splits(photos: Sequence[int], splits: Sequence[str | None]) -> set[str]:
    """The splits the source itself gives ``photos``."""
    return {split for split in (splits[i] for i in photos) if split is not None}


def assign_splits(
    photos: Sequence[int], labels: Sequence[str], splits: Sequence[str | None], settings: PrepareSettings
) -> np.ndarray:
    """The split code of each of ``photos`` (:data:`UNASSIGNED` for the others): given splits kept, the rest
    carved from train.

    A photo without a split belongs to train; missing splits are carved out of train (seeded, stratified).
    """
    codes = np.full(len(labels), UNASSIGNED, dtype=np.int8)
    fractions = carved_fractions(given_splits(photos, splits), settings)
    pool: dict[str, list[int]] = defaultdict(list)
    for index in photos:
        split = splits[index]
        if split in (None, "train"):
            pool[labels[index]].append(index)
        else:
            codes[index] = SPLITS.index(split)
    for label in sorted(pool):
        for split, members in carve(pool[label], label, fractions, settings.seed):
            codes[members] = SPLITS.index(split or "train")
    return codes


def least_photos(fractions: dict[str, float]) -> int:
    """The fewest photos a class needs for each carved split to get one and train to keep one."""
    for count in range(1, 10_000):
        taken = [round(count * fraction) for fraction in fractions.values()]
        if all(taken) and count - sum(taken) >= 1:
            return count
    return 10_000


def check_split_sizes(
    photos: Sequence[int],
    labels: Sequence[str],
    splits: Sequence[str | None],
    classes: Sequence[str],
    settings: PrepareSettings,
    what: str,
) -> None:
    """Every class keeps a training photo and gets one in each carved split; else an error naming it."""
    fractions = carved_fractions(given_splits(photos, splits), settings)
    codes = assign_splits(photos, labels, splits, settings)
    per: dict[tuple[int, str], int] = defaultdict(int)
    pool: dict[str, int] = defaultdict(int)
    for index in photos:
        per[(int(codes[index]), labels[index])] += 1
        pool[labels[index]] += splits[index] in (None, "train")
    for label in classes:
        if per[(0, label)] and all(per[(SPLITS.index(split), label)] for split in fractions):
            continue
        if not fractions:
            raise DataError(f"Class '{label}' has no usable {what} in train.")
        carved = " and ".join(f"{split} ({fraction:.0%})" for split, fraction in fractions.items())
        raise DataError(
            f"Class '{label}' has {pool[label]} usable {what} in train: too few to carve out {carved} and keep "
            f"some for training. It needs at least {least_photos(fractions)} (or add {'/'.join(fractions)} "
            "folders, or lower --val-fraction/--test-fraction)."
        )
