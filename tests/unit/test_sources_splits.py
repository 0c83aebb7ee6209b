"""Seeded stratified splits and prepare settings."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from image_classifier.data.sources.base import PrepareSettings
from image_classifier.data.sources.splits import stratified_split
from image_classifier.errors import ConfigError

ITEMS = [(f"cat.{i}.jpg", "cat") for i in range(50)] + [(f"dog.{i}.jpg", "dog") for i in range(30)]
FRACTIONS = {"val": 0.1, "test": 0.2}


def test_every_class_is_split_in_proportion() -> None:
    splits = stratified_split(ITEMS, FRACTIONS, seed=0, rest="train")
    counts = Counter((split, key.split(".")[0]) for key, split in splits.items())
    assert counts == {
        ("val", "cat"): 5, ("test", "cat"): 10, ("train", "cat"): 35,
        ("val", "dog"): 3, ("test", "dog"): 6, ("train", "dog"): 21,
    }  # fmt: skip


def test_splits_depend_on_the_seed_not_on_the_listing_order() -> None:
    shuffled = ITEMS.copy()
    random.Random(3).shuffle(shuffled)
    assert stratified_split(shuffled, FRACTIONS, 0, "train") == stratified_split(ITEMS, FRACTIONS, 0, "train")
    assert stratified_split(ITEMS, FRACTIONS, 1, "train") != stratified_split(ITEMS, FRACTIONS, 0, "train")


def test_settings_reject_unknown_keys_and_impossible_fractions() -> None:
    assert PrepareSettings.from_mapping({"seed": 3}).seed == 3
    with pytest.raises(ConfigError, match="val_fractoin"):
        PrepareSettings.from_mapping({"val_fractoin": 0.2})
    with pytest.raises(ConfigError, match="leave some training data"):
        PrepareSettings.from_mapping({"val_fraction": 0.5, "test_fraction": 0.5})
