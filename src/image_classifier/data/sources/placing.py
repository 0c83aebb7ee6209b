"""Decode a user's photos into records and place them in the prepared layout, a few dozen bytes a photo.

Photo ``i`` is the ``i``-th photo :func:`~image_classifier.data.sources.discover.find_photos` found. What
the import learns of it (its sizes, digests, split and file name) is one row of a numpy record array, and
its prepared path is computed when asked for, so importing many photos keeps memory flat.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from image_classifier.data.layout import SPLITS
from image_classifier.data.quality import PhotoTable
from image_classifier.data.sources.base import PrepareSettings
from image_classifier.data.sources.decode import SHARDS, Decoded, decode_all, decoded_name
from image_classifier.data.sources.discover import Found
from image_classifier.data.sources.user_splits import assign_splits, check_split_sizes

INCOMING = ".incoming"
RECORD = np.dtype(
    [
        ("usable", "?"),
        ("suffix", "u1"),
        ("split", "i1"),
        ("renamed", "u4"),
        ("sizes", "i4", 4),
        ("md5", "u8", 2),
        ("phash", "u8"),
        ("dhash", "u8"),
    ]
)
"""One photo: kept or skipped, its suffix (a code into the suffixes seen), split code, the number added to a
file name another photo of its class and split has, prepared and source sizes, MD5 and perceptual hashes."""


class Column(Sequence[str]):
    """A column computed on demand: ``value(order[k])`` for each ``k``."""

    def __init__(self, value: Callable[[int], str], order: np.ndarray) -> None:
        self.value, self.order = value, order

    def __len__(self) -> int:
        return len(self.order)

    @overload
    def __getitem__(self, k: int) -> str: ...
    @overload
    def __getitem__(self, k: slice) -> Column: ...
    def __getitem__(self, k: int | slice) -> str | Column:
        if isinstance(k, slice):
            return Column(self.value, self.order[k])
        return self.value(int(self.order[k]))


def decode_found(
    found: Found, folder: Path, incoming: Path, settings: PrepareSettings, workers: int, desc: str
) -> tuple[np.ndarray, list[str], list[dict[str, str]], Counter[str]]:
    """Decode every photo into ``incoming``: the records, the suffixes, the skipped, the conversions."""
    records = np.zeros(len(found), dtype=RECORD)
    suffixes: list[str] = []
    skipped: list[dict[str, str]] = []
    converted: Counter[str] = Counter()
    paths = (str(folder / origin) for origin in found.origins)
    for result in decode_all(paths, len(found), incoming, settings, workers, desc):
        if not isinstance(result, Decoded):
            skipped.append({"path": found.origins[result.index], "reason": result.reason})
            continue
        if result.suffix not in suffixes:
            suffixes.append(result.suffix)
        record = records[result.index]
        record["usable"], record["suffix"] = True, suffixes.index(result.suffix)
        record["sizes"] = (result.width, result.height, result.source_width, result.source_height)
        record["md5"] = np.frombuffer(result.md5, dtype=np.uint64)
        record["phash"], record["dhash"] = result.phash, result.dhash
        converted.update(result.conversions)
    skipped.sort(key=lambda entry: entry["path"])
    return records, suffixes, skipped, converted


class Placement:
    """Where each usable photo goes: ``split/class/name``, its name unique in its folder (whatever the case).

    Row ``k`` is the ``k``-th photo of the manifest (by split, class and path); ``sources[k]`` is its number
    among the photos found.
    """

    def __init__(self, found: Found, records: np.ndarray, suffixes: list[str], settings: PrepareSettings) -> None:
        self.found, self.suffixes, self.classes = found, suffixes, found.classes
        codes = {label: code for code, label in enumerate(self.classes)}
        labels = np.fromiter((codes[label] for label in found.labels), dtype=np.int32, count=len(found))
        usable = np.flatnonzero(records["usable"]).tolist()
        what = "photos (after the unreadable ones were skipped)"
        check_split_sizes(usable, found.labels, found.splits, self.classes, settings, what)
        records["split"] = assign_splits(usable, found.labels, found.splits, settings)
        self.sources = self._manifest_order(records, labels)
        self.records, self.labels = records[self.sources], labels[self.sources]

    def _manifest_order(self, records: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The usable photos by split, class and name, each folder's clashing names numbered."""
        parts = [np.zeros(0, dtype=np.int32)]
        for split in range(len(SPLITS)):
            in_split = records["usable"] & (records["split"] == split)
            for label in range(len(self.classes)):
                parts.append(self._name_folder(np.flatnonzero(in_split & (labels == label)), records))
        return np.concatenate(parts)

    def _name(self, source: int, number: int, suffix: int) -> str:
        stem = posixpath.splitext(posixpath.basename(self.found.origins[source]))[0]
        return f"{stem}-{number}{self.suffixes[suffix]}" if number else f"{stem}{self.suffixes[suffix]}"

    def _name_folder(self, members: np.ndarray, records: np.ndarray) -> np.ndarray:
        """Number the photos of one folder whose names clash (in source order); the photos in name order."""
        names: dict[int, str] = {}
        taken: set[str] = set()
        for source in sorted(members.tolist(), key=self.found.origins.__getitem__):
            record, number = records[source], 0
            while (name := self._name(source, number, record["suffix"])).lower() in taken:
                number += 1
            record["renamed"] = number
            names[source] = name
            taken.add(name.lower())
        return np.array(sorted(names, key=names.__getitem__), dtype=np.int32)

    def __len__(self) -> int:
        return len(self.sources)

    def path(self, row: int) -> str:
        """Row ``row``'s path in the prepared layout."""
        record = self.records[row]
        name = self._name(self.sources[row], record["renamed"], record["suffix"])
        return f"{SPLITS[record['split']]}/{self.classes[self.labels[row]]}/{name}"

    def move(self, incoming: Path, staging: Path) -> None:
        """Move each photo from ``incoming`` to its place under ``staging``, and remove ``incoming``."""
        made: set[str] = set()
        for row, source in enumerate(self.sources.tolist()):
            folder, name = self.path(row).rsplit("/", 1)
            if folder not in made:
                (staging / folder).mkdir(parents=True, exist_ok=True)
                made.add(folder)
            suffix = self.suffixes[self.records[row]["suffix"]]
            os.rename(f"{incoming}/{decoded_name(source, suffix)}", f"{staging}/{folder}/{name}")
        for shard in range(SHARDS):
            (incoming / str(shard)).rmdir()
        incoming.rmdir()

    def table(self, rows: np.ndarray | None = None) -> PhotoTable:
        """The placed photos (``rows`` of them; all by default), as the quality report reads them."""
        records, labels = (self.records, self.labels) if rows is None else (self.records[rows], self.labels[rows])
        rows = np.arange(len(self)) if rows is None else rows
        return PhotoTable(
            self.classes,
            records["split"],
            labels,
            Column(self.path, rows),
            Column(lambda row: self.found.origins[self.sources[row]], rows),
            records["sizes"],
            records["md5"],
            records["phash"],
            records["dhash"],
        )
