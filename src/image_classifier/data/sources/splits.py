"""Seeded, stratified splits: the same files always land in the same split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def carve(keys: list[K], label: str, fractions: dict[str, float], seed: int) -> Iterator[tuple[str | None, list[K]]]:
    """One class's keys, sorted then shuffled with a seed of its own, cut into ``fractions`` (rounded); the
    remainder last, as ``(None, keys)``."""
    keys = sorted(keys, key=str)
    random.Random(f"{seed}:{label}").shuffle(keys)
    start = 0
    for split, fraction in fractions.items():
        count = round(len(keys) * fraction)
        yield split, keys[start : start + count]
        start += count
    yield None, keys[start:]


def stratified_split(items: Sequence[tuple[K, str]], fractions: dict[str, float], seed: int, rest: str) -> dict[K, str]:
    """Assign each ``(key, label)`` a split: ``fractions`` of every class (rounded), the remainder to ``rest``.

    Keys are sorted per class before a seeded shuffle, so the result depends only on the keys,
    the labels, the fractions and the seed, never on the order the files were listed in.
    """
    by_label: dict[str, list[K]] = defaultdict(list)
    for key, label in items:
        by_label[label].append(key)
    assignment: dict[K, str] = {}
    for label in sorted(by_label):
        for split, keys in carve(by_label[label], label, fractions, seed):
            assignment.update((key, split or rest) for key in keys)
    return assignment
