"""A user's own photos as a dataset: imported from a folder, an archive or a list into the prepared layout.

``raw/NAME`` becomes a copy of the source; ``processed/NAME`` the checked photos in the same layout as the
built-in datasets (manifest, ``summary.json``, fingerprint), with ``quality.json`` (:mod:`..quality`).
Both are written beside their old versions and renamed into place only when complete, so an interrupted
or failed import leaves the data that was there untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from image_classifier.atomic import atomic_path
from image_classifier.data.layout import (
    PreparedDataset,
    is_prepared,
    load_prepared_dataset,
    prepared_dir,
    write_index,
)
from image_classifier.data.quality import NEAR_DUPLICATE_DISTANCE, PhotoTable, analyse, leaked_copies
from image_classifier.data.sources.base import PrepareSettings
from image_classifier.data.sources.discover import Found, check_classes, find_photos
from image_classifier.data.sources.photo_list import read_photo_list
from image_classifier.data.sources.placing import INCOMING, Placement, decode_found
from image_classifier.data.sources.raw_copy import copy_source
from image_classifier.data.sources.user_names import COPY_RECORD, LIST_SUFFIXES
from image_classifier.data.sources.user_splits import check_split_sizes
from image_classifier.errors import DataError


@dataclass(frozen=True)
class ImportSettings(PrepareSettings):
    """How a user's photos are imported (the ``prepare:`` section of the data config the import writes)."""

    source: str | None = None
    """The folder, archive or list imported, as an absolute path (``raw/NAME`` is its copy)."""
    dedupe: bool = False
    near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE


@dataclass(frozen=True)
class ImportedSource:
    """A :class:`~image_classifier.data.sources.base.Source` for a user's photos, imported with ``--source``."""

    name: str
    workers: int = 0
    """Copying threads and decoding processes (0: one per core)."""
    settings_key: ClassVar[str] = "prepare"
    generated: ClassVar[bool] = False

    def is_current(self, directory: Path, settings: Mapping[str, Any]) -> bool:
        return is_prepared(directory)

    def prepare(self, root: Path, origin: Path | None, settings: Mapping[str, Any]) -> PreparedDataset:
        return import_photos(self.name, Path(root), origin, ImportSettings.from_mapping(settings), self.workers)


def is_import_config(prepare: Mapping[str, Any] | None) -> bool:
    """Whether a data config's ``prepare`` section is one an import wrote (it records the source)."""
    return isinstance(prepare, Mapping) and "source" in prepare


@contextmanager
def raw_copy(raw: Path, origin: Path | None, workers: int = 0) -> Iterator[tuple[Path, list[dict[str, str]]]]:
    """The raw folder to read: a new copy of ``origin`` (renamed to ``raw`` on success), or ``raw`` as it is; and
    what the copy left out (recorded in the copy, so preparing from ``raw`` again reports it too)."""
    if origin is None or (raw.exists() and origin.resolve() == raw.resolve()):
        record = raw / COPY_RECORD
        yield raw, json.loads(record.read_text()) if record.is_file() else []
        return
    with atomic_path(raw, directory=True) as staging:
        skipped = copy_source(origin, staging, workers)
        if skipped:
            (staging / COPY_RECORD).write_text(json.dumps(skipped, indent=1))
        yield staging, skipped


def source_to_read(name: str, raw: Path, origin: Path | None, settings: ImportSettings) -> Path | None:
    """What to copy into ``raw``: ``origin``, else nothing (``raw`` is there), else the source the config records."""
    if origin is not None or raw.is_dir():
        return origin
    if settings.source and Path(settings.source).exists():
        return Path(settings.source)
    raise DataError(
        f"No photos for {name}: {raw} is missing (dvc pull it) and the recorded source "
        f"{settings.source or '(none)'} is not there; import again with `invoke data {name} --source PATH --force`."
    )


def find_in_raw(raw: Path, settings: ImportSettings, origin: Path | None) -> Found:
    recorded = origin if origin is not None else Path(settings.source) if settings.source else None
    if recorded is not None and recorded.suffix.lower() in LIST_SUFFIXES and (raw / recorded.name).is_file():
        return read_photo_list(raw / recorded.name, raw)
    return find_photos(raw)


def import_photos(
    name: str, root: Path, origin: Path | None, settings: ImportSettings, workers: int = 0
) -> PreparedDataset:
    """Copy ``origin`` into ``root/raw/name`` (or read the copy there) and prepare it; all or nothing."""
    raw = root / "raw" / name
    origin = source_to_read(name, raw, Path(origin).expanduser().absolute() if origin else None, settings)
    with raw_copy(raw, origin, workers) as (folder, copy_skipped):
        found = find_in_raw(folder, settings, origin)
        found.skipped[:0] = copy_skipped
        check_classes(found, origin or raw)
        check_split_sizes(range(len(found)), found.labels, found.splits, found.classes, settings, "photos")
        with atomic_path(prepared_dir(root, name), directory=True) as staging:
            provenance = {
                "dataset": f"{name} (imported)",
                "obtained_from": str(origin or settings.source or raw),
                "layout": found.layout,
                "settings": asdict(settings),
            }
            write_import(staging, name, found, folder, settings, workers, provenance)
    return load_prepared_dataset(prepared_dir(root, name))


def write_import(
    staging: Path, name: str, found: Found, folder: Path, settings: ImportSettings, workers: int,
    provenance: dict[str, Any],
) -> None:  # fmt: skip
    """Decode, place, report on (and with ``dedupe`` remove leaked copies of) the photos, then index them."""
    incoming = staging / INCOMING
    incoming.mkdir()
    records, suffixes, skipped, converted = decode_found(found, folder, incoming, settings, workers, f"import {name}")
    skipped = found.skipped + skipped
    placement = Placement(found, records, suffixes, settings)
    del records  # the placement holds them, in manifest order
    placement.move(incoming, staging)
    photos = placement.table()
    report = analyse(photos, skipped, settings.near_duplicate_distance)
    if settings.dedupe:
        removed = leaked_copies(report)
        gone = {entry["path"] for entry in removed}
        for path in gone:
            (staging / path).unlink()
        photos = placement.table(np.flatnonzero([placement.path(row) not in gone for row in range(len(placement))]))
        report = {**analyse(photos, skipped, settings.near_duplicate_distance), "removed": removed}
    (staging / "quality.json").write_text(json.dumps(report, indent=2))
    extra = {"converted": converted, "layout": found.layout, "removed_duplicates": len(report["removed"])}
    write_index(staging, found.classes, manifest_rows(staging, photos), provenance, skipped, extra)


def manifest_rows(staging: Path, photos: PhotoTable) -> Iterator[dict[str, Any]]:
    """Each placed photo's manifest row, made as it is written."""
    for index in range(len(photos)):
        path = photos.paths[index]
        width, height = photos.sizes[index][:2].tolist()
        yield {
            "split": photos.split(index),
            "class": photos.label(index),
            "path": path,
            "width": width,
            "height": height,
            "bytes": (staging / path).stat().st_size,
            "md5": photos.md5[index].tobytes().hex(),
        }
