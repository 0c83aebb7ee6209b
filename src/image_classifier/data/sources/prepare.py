"""The real datasets: obtained (downloaded or imported) into ``ROOT/raw/NAME``,
prepared into ``ROOT/processed/NAME``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from tqdm import tqdm

from image_classifier.atomic import atomic_path
from image_classifier.data.layout import PreparedDataset, Sample, is_prepared, prepared_dir, write_prepared_dataset
from image_classifier.data.sources.archive import import_source, unpack_nested
from image_classifier.data.sources.base import Collected, PrepareSettings
from image_classifier.data.sources.images import Rejected, check_image
from image_classifier.errors import DataError

JPEG_QUALITY = 95


@dataclass(frozen=True)
class DatasetSource:
    """A real dataset: where it comes from and how its files map to splits and classes.

    A :class:`~image_classifier.data.sources.base.Source` that is downloaded, or imported from the
    archive or folder the user has, and prepared once (again on ``--force``).
    """

    name: str
    title: str
    homepage: str
    license: str
    fetch: Callable[[Path, PrepareSettings], None]
    """Download the dataset as distributed into an empty directory."""
    collect: Callable[[Path, PrepareSettings], Collected]
    """Find the images in a raw directory (archive unpacked or folder copied) and assign splits and labels."""
    nested_archives: tuple[str, ...] = ()
    """Archive names inside the distribution to unpack once it is in ``raw/`` (Kaggle's zips in zips)."""
    settings_key: ClassVar[str] = "prepare"
    generated: ClassVar[bool] = False

    def is_current(self, directory: Path, settings: Mapping[str, Any]) -> bool:
        """Prepared at all: changed ``prepare`` settings take effect on ``--force``."""
        return is_prepared(directory)

    def prepare(self, root: Path, origin: Path | None, settings: Mapping[str, Any]) -> PreparedDataset:
        return prepare_source(self, root, origin, PrepareSettings.from_mapping(settings))


def obtain(source: DatasetSource, raw: Path, origin: Path | None, settings: PrepareSettings) -> None:
    """Import ``origin`` into ``raw``, or download the dataset there if ``raw`` is not complete yet."""
    if origin is not None:
        import_source(origin, raw)
    elif not raw.is_dir():
        with atomic_path(raw, directory=True) as staging:
            source.fetch(staging, settings)
    for name in source.nested_archives:
        unpack_nested(raw, name)


def checked_samples(
    name: str, collected: Collected, settings: PrepareSettings, skipped: list[dict[str, str]], converted: Counter[str]
) -> Iterator[Sample]:
    """The usable images as samples; the others go to ``skipped`` with a reason, conversions are counted."""
    used: set[tuple[str, str, str]] = set()
    for candidate in tqdm(collected.candidates, desc=f"prepare {name}", unit="img", disable=None):
        result = check_image(candidate.image, settings)
        if isinstance(result, Rejected):
            skipped.append({"path": candidate.origin, "reason": result.reason})
            continue
        converted.update(result.conversions)
        stem, file_name, n = Path(candidate.name).stem, Path(candidate.name).stem + result.suffix, 0
        while (candidate.split, candidate.label, file_name) in used:
            n += 1
            file_name = f"{stem}-{n}{result.suffix}"
        used.add((candidate.split, candidate.label, file_name))
        yield Sample(candidate.split, candidate.label, result.image, JPEG_QUALITY, name=file_name, data=result.data)


def prepare_source(
    source: DatasetSource, root: Path, origin: Path | None, settings: PrepareSettings
) -> PreparedDataset:
    """Obtain (download, or import ``origin``) then prepare ``source``; the prepared folder is all or nothing."""
    raw = Path(root) / "raw" / source.name
    obtain(source, raw, origin, settings)
    collected = source.collect(raw, settings)
    if not collected.candidates:
        raise DataError(f"No images found for {source.name} in {raw}.")
    skipped = list(collected.skipped)
    converted: Counter[str] = Counter()
    provenance = {
        "dataset": source.title,
        "homepage": source.homepage,
        "license": source.license,
        "obtained_from": Path(origin).name if origin is not None else "download",
        "settings": asdict(settings),
    }
    return write_prepared_dataset(
        prepared_dir(root, source.name),
        classes=collected.classes,
        samples=checked_samples(source.name, collected, settings, skipped, converted),
        source=provenance,
        skipped=skipped,
        extra={"converted": converted},
    )
