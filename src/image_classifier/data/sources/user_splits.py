"""Splits for a user's photos: the source's own are kept, missing ones carved out seeded and stratified."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from image_classifier.data.sources.base import PrepareSettings
from image_classifier.data.sources.splits import stratified_split
from image_classifier.errors import DataError

CARVED = ("val", "test")


def carved_fractions(given: set[str], settings: PrepareSettings) -> dict[str, float]:
    """The splits the source lacks, with the fraction of each class's train photos they take."""
    wanted = {"val": settings.val_fraction, "test": settings.test_fraction}
    return {split: fraction for split, fraction in wanted.items() if split not in given and fraction > 0}


def assign_splits(photos: Sequence[tuple[str, str, str | None]], settings: PrepareSettings) -> dict[str, str]:
    """``{key: split}`` for ``(key, label, split or None)``: given splits kept, the rest carved from train.

    A photo without a split belongs to train; missing splits are carved out of train (seeded, stratified).
    """
    given = {split for _, _, split in photos if split is not None}
    fractions = carved_fractions(given, settings)
    pool = [(key, label) for key, label, split in photos if split in (None, "train")]
    carved = stratified_split(pool, fractions, settings.seed, "train")
    return {key: split if split not in (None, "train") else carved[key] for key, _, split in photos}


def least_photos(fractions: dict[str, float]) -> int:
    """The fewest photos a class needs for each carved split to get one and train to keep one."""
    for count in range(1, 10_000):
        taken = [round(count * fraction) for fraction in fractions.values()]
        if all(taken) and count - sum(taken) >= 1:
            return count
    return 10_000


def check_split_sizes(
    photos: Sequence[tuple[str, str, str | None]], classes: Sequence[str], settings: PrepareSettings, what: str
) -> None:
    """Every class keeps a training photo and gets one in each carved split; else an error naming it."""
    given = {split for _, _, split in photos if split is not None}
    fractions = carved_fractions(given, settings)
    assigned = assign_splits(photos, settings)
    per = Counter((assigned[key], label) for key, label, _ in photos)
    pool = Counter(label for _, label, split in photos if split in (None, "train"))
    for label in classes:
        if per[("train", label)] and all(per[(split, label)] for split in fractions):
            continue
        if not fractions:
            raise DataError(f"Class '{label}' has no usable {what} in train.")
        carved = " and ".join(f"{split} ({fraction:.0%})" for split, fraction in fractions.items())
        raise DataError(
            f"Class '{label}' has {pool[label]} usable {what} in train: too few to carve out {carved} and keep "
            f"some for training. It needs at least {least_photos(fractions)} (or add {'/'.join(fractions)} "
            "folders, or lower --val-fraction/--test-fraction)."
        )
