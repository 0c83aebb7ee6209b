"""What a dataset's photos are like, and what is wrong with them: the data-quality report's content.

Counts per split and class with the imbalance ratio; the photos' sizes; the skipped files; exact
duplicates (same bytes) within and across splits; near duplicates across splits (the same photo resized,
re-encoded or slightly cropped: perceptual hashes from ``imagehash`` within a Hamming distance); groups
that span splits (leakage) and groups whose files carry different labels (labelling conflicts).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from image_classifier.data.layout import SPLITS

NEAR_DUPLICATE_DISTANCE = 10
"""Largest Hamming distance between the 64-bit pHashes of two copies of a photo. Measured on 300 real photos:
a copy resized to 80 % and re-encoded at JPEG quality 85 is within 2 (dHash 3); one cropped by 4 % a side
within 10 for 84 % of them (median 8, dHash 7)."""
CONFIRM_DISTANCE = 12
"""Largest dHash distance that confirms a pHash match. Among 1.4 million pairs of the 1,700 real sample photos,
the distinct ones with pHashes within 12 were all 18 or more apart in dHash; true copies within 3."""
FEW_TRAINING_PHOTOS = 10
IMBALANCE_WARNING = 5.0
CHUNK_ELEMENTS = 262_144
"""Pairs compared at once: 2 MB per uint64 matrix."""


@dataclass(frozen=True)
class PhotoTable:
    """A dataset's photos as columns (a few dozen bytes a photo), as the report needs them.

    Photo ``i`` is in split ``SPLITS[splits[i]]`` and class ``classes[labels[i]]``; ``sizes[i]`` is its
    prepared width and height and its source width and height; ``md5[i]`` its digest as two 64-bit words.
    """

    classes: Sequence[str]
    splits: np.ndarray
    labels: np.ndarray
    paths: Sequence[str]
    """Relative to the prepared dataset."""
    origins: Sequence[str]
    """Where each came from, relative to the source."""
    sizes: np.ndarray
    md5: np.ndarray
    phash: np.ndarray
    dhash: np.ndarray

    def __len__(self) -> int:
        return len(self.splits)

    def split(self, index: int) -> str:
        return SPLITS[self.splits[index]]

    def label(self, index: int) -> str:
        return self.classes[self.labels[index]]

    def entry(self, index: int) -> dict[str, str]:
        return {"split": self.split(index), "class": self.label(index), "path": self.paths[index],
                "origin": self.origins[index]}  # fmt: skip


def md5_words(digests: Iterable[bytes | str]) -> np.ndarray:
    """MD5 digests (bytes or hex) as an ``(n, 2)`` array of 64-bit words."""
    raw = b"".join(bytes.fromhex(d) if isinstance(d, str) else d for d in digests)
    return np.frombuffer(raw, dtype=np.uint64).reshape(-1, 2).copy()


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    return np.unpackbits(values[..., None].view(np.uint8), axis=-1).sum(axis=-1)


class _Groups:
    """Union-find over the photo indices that were joined to another."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, index: int) -> int:
        parent = self.parent.setdefault(index, index)
        while parent != index:
            self.parent[index] = self.parent[parent]
            index, parent = parent, self.parent[parent]
        return index

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def members(self) -> list[list[int]]:
        groups: dict[int, list[int]] = defaultdict(list)
        for index in sorted(self.parent):
            groups[self.find(index)].append(index)
        return [members for members in groups.values() if len(members) > 1]


def near_pairs(photos: PhotoTable, distance: int) -> Iterable[tuple[int, int, int]]:
    """``(i, j, d)`` for every two photos in different splits whose pHashes are ``d`` <= ``distance`` apart
    (and their dHashes within :data:`CONFIRM_DISTANCE`)."""
    hashes, confirm = photos.phash, photos.dhash
    by_split = {split: np.flatnonzero(photos.splits == code) for code, split in enumerate(SPLITS)}
    for first, second in itertools.combinations([s for s in SPLITS if len(by_split[s])], 2):
        others = by_split[second]
        step = max(1, CHUNK_ELEMENTS // len(others))  # a fixed memory budget, whatever the number of photos
        for start in range(0, len(by_split[first]), step):
            rows = by_split[first][start : start + step]
            distances = popcount(hashes[rows][:, None] ^ hashes[others][None, :])
            close = (distances <= distance) & (
                popcount(confirm[rows][:, None] ^ confirm[others][None, :]) <= CONFIRM_DISTANCE
            )
            for row, column in zip(*np.nonzero(close), strict=True):
                yield int(rows[row]), int(others[column]), int(distances[row, column])


def _group_record(photos: PhotoTable, members: list[int], **extra: Any) -> dict[str, Any]:
    ordered = sorted(members, key=lambda i: (photos.splits[i], photos.paths[i]))
    return {
        "files": [photos.entry(i) for i in ordered],
        "cross_split": len({int(photos.splits[i]) for i in members}) > 1,
        "conflict": len({int(photos.labels[i]) for i in members}) > 1,
        **extra,
    }


def same_bytes(photos: PhotoTable) -> list[list[int]]:
    """The groups of two or more photos with the same MD5, each in index order, by their first photo.

    Photos are sorted by the digest's first word; only neighbours that share it are compared in full.
    """
    first = photos.md5[:, 0]
    by_first = np.argsort(first, kind="stable")
    shared = np.flatnonzero(first[by_first][1:] == first[by_first][:-1])
    groups: dict[bytes, list[int]] = defaultdict(list)
    for index in sorted(set(by_first[shared].tolist()) | set(by_first[shared + 1].tolist())):
        groups[photos.md5[index].tobytes()].append(index)
    return sorted(members for members in groups.values() if len(members) > 1)


def duplicate_groups(photos: PhotoTable, distance: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Exact duplicate groups (same md5, any splits) and near duplicate groups (across splits)."""
    exact_members = same_bytes(photos)
    exact = [_group_record(photos, members, md5=photos.md5[members[0]].tobytes().hex()) for members in exact_members]
    groups = _Groups()
    for members in exact_members:
        for other in members[1:]:
            groups.join(members[0], other)
    farthest: dict[tuple[int, int], int] = {}
    for i, j, d in near_pairs(photos, distance):
        if not np.array_equal(photos.md5[i], photos.md5[j]):
            groups.join(i, j)
            farthest[(i, j)] = d
    near = []
    for members in groups.members():
        if len({photos.md5[i].tobytes() for i in members}) < 2:
            continue  # all the same bytes: an exact group
        inside = set(members)
        worst = max((d for (i, j), d in farthest.items() if i in inside and j in inside), default=0)
        near.append(_group_record(photos, members, distance=worst))
    return exact, near


def size_stats(values: np.ndarray) -> dict[str, float]:
    if not len(values):
        return {}
    array = np.asarray(values)
    percentiles = np.percentile(array, [5, 50, 95])
    return {
        "min": int(array.min()),
        "p5": float(percentiles[0]),
        "median": float(percentiles[1]),
        "p95": float(percentiles[2]),
        "max": int(array.max()),
    }


def counts(photos: PhotoTable) -> dict[str, Any]:
    """Photos per split and class, per class, and the ratio of the largest class to the smallest."""
    classes = photos.classes
    cells = photos.splits.astype(np.int64) * len(classes) + photos.labels
    per: list[list[int]] = np.bincount(cells, minlength=len(SPLITS) * len(classes)).reshape(len(SPLITS), -1).tolist()
    splits = [split for code, split in enumerate(SPLITS) if any(per[code])]
    totals = {label: sum(row[code] for row in per) for code, label in enumerate(classes)}
    smallest = min(totals.values(), default=0)
    return {
        "per_split": {split: dict(zip(classes, per[SPLITS.index(split)], strict=True)) for split in splits},
        "per_class": totals,
        "imbalance_ratio": round(max(totals.values()) / smallest, 3) if smallest else None,
        "largest_class": max(totals, key=lambda label: totals[label]) if totals else None,
        "smallest_class": min(totals, key=lambda label: totals[label]) if totals else None,
    }


def warnings_for(report: dict[str, Any]) -> list[str]:
    """One line per problem a person should look at before training."""
    lines = []
    leaks = [
        group for kind in ("exact_duplicates", "near_duplicates") for group in report[kind] if group["cross_split"]
    ]
    for group in leaks:
        names = ", ".join(f"{f['split']}/{f['class']}/{_file_name(f['path'])}" for f in group["files"][:4])
        lines.append(f"leakage: the same photo in {' and '.join(_splits(group))}: {names}")
    conflicts = [g for kind in ("exact_duplicates", "near_duplicates") for g in report[kind] if g["conflict"]]
    for group in conflicts:
        names = ", ".join(f"{f['class']}: {f['origin']}" for f in group["files"][:4])
        lines.append(f"label conflict: the same photo under different classes: {names}")
    ratio = report["counts"]["imbalance_ratio"]
    if ratio is not None and ratio >= IMBALANCE_WARNING:
        lines.append(
            f"imbalance: '{report['counts']['largest_class']}' has {ratio:g}x the photos of "
            f"'{report['counts']['smallest_class']}'"
        )
    train = report["counts"]["per_split"].get("train", {})
    few = [f"'{label}' ({count})" for label, count in train.items() if count < FEW_TRAINING_PHOTOS]
    if few:
        lines.append(f"few training photos: {', '.join(few[:8])}")
    return lines


def _file_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _splits(group: dict[str, Any]) -> list[str]:
    return [split for split in SPLITS if any(f["split"] == split for f in group["files"])]


def analyse(
    photos: PhotoTable, skipped: Sequence[dict[str, str]], distance: int = NEAR_DUPLICATE_DISTANCE
) -> dict[str, Any]:
    """The whole report, as JSON-ready data (``quality.json``)."""
    exact, near = duplicate_groups(photos, distance)
    width, height, source_width, source_height = photos.sizes.T
    report: dict[str, Any] = {
        "classes": list(photos.classes),
        "total": len(photos),
        "counts": counts(photos),
        "sizes": {
            "width": size_stats(source_width),
            "height": size_stats(source_height),
            "shorter_side": size_stats(np.minimum(source_width, source_height)),
            "prepared_longer_side": size_stats(np.maximum(width, height)),
        },
        "skipped": {"total": len(skipped), "by_reason": dict(Counter(s["reason"] for s in skipped)), "files": skipped},
        "exact_duplicates": exact,
        "near_duplicates": near,
        "near_duplicate_method": (
            f"imagehash pHash within {distance} bits of 64 and dHash within {CONFIRM_DISTANCE}, across splits"
        ),
        "removed": [],
    }
    report["leakage"] = {
        "groups": sum(g["cross_split"] for kind in ("exact_duplicates", "near_duplicates") for g in report[kind]),
    }
    report["label_conflicts"] = {
        "groups": sum(g["conflict"] for kind in ("exact_duplicates", "near_duplicates") for g in report[kind]),
    }
    report["warnings"] = warnings_for(report)
    return report


def leaked_copies(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The val and test files of every duplicate group that also has a file in train (what ``--dedupe`` removes),
    each with the train files it copies."""
    removed: dict[str, dict[str, Any]] = {}
    for group in report["exact_duplicates"] + report["near_duplicates"]:
        train = [f["path"] for f in group["files"] if f["split"] == "train"]
        if train:
            removed.update((f["path"], {**f, "duplicate_of": train}) for f in group["files"] if f["split"] != "train")
    return sorted(removed.values(), key=lambda f: f["path"])
