"""The canonical prepared-dataset layout shared by every dataset.

Dataset NAME is prepared into ``DATA_ROOT/processed/NAME`` (:func:`prepared_dir`), as
``ROOT/{train,val,test}/<class>/<file>.jpg`` plus ``classes.json`` (ordered class names),
``manifest.csv`` (split, class, path, width, height, bytes, md5) and ``summary.json``
(counts per split and class, skipped files with reasons, source). ``summary.json`` is
written last and the directory is renamed into place, so a directory that has it is
complete. Class folders are the class names in sorted order, as torchvision's
``ImageFolder`` numbers them.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from image_classifier.atomic import atomic_path
from image_classifier.errors import DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")
MANIFEST_FIELDS: tuple[str, ...] = ("split", "class", "path", "width", "height", "bytes", "md5")


@dataclass
class Sample:
    """One image on its way into a prepared dataset."""

    split: str
    label: str
    image: Image.Image
    quality: int = 90
    name: str | None = None
    data: bytes | None = None
    """Encoded image to write as is (already checked); otherwise ``image`` is encoded as JPEG."""


@dataclass(frozen=True)
class PreparedDataset:
    """A prepared dataset on disk."""

    root: Path
    classes: list[str]
    summary: dict[str, Any] = field(repr=False)

    @property
    def fingerprint(self) -> str:
        """md5 of the manifest: changes whenever any image, label or split changes."""
        return hashlib.md5((self.root / "manifest.csv").read_bytes()).hexdigest()

    def largest_side(self, split: str) -> int:
        """The longest side of any image in ``split``, from the manifest (no image is opened)."""
        with open(self.root / "manifest.csv", newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row["split"] == split]
        return max((max(int(row["width"]), int(row["height"])) for row in rows), default=0)

    def split_dir(self, split: str) -> Path:
        return self.root / split


def encode_jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def write_prepared_dataset(
    root: Path,
    classes: list[str],
    samples: Iterable[Sample],
    source: dict[str, Any],
    skipped: Iterable[dict[str, str]] = (),
    extra: dict[str, Any] | None = None,
) -> PreparedDataset:
    """Write ``samples`` into ``root`` in the canonical layout; all or nothing.

    ``skipped`` is read after every sample has been written, so a generator may fill it as it
    goes; ``extra`` adds keys to ``summary.json``.
    """
    if list(classes) != sorted(classes):
        raise ValueError(f"classes must be in sorted order, as ImageFolder numbers them: {classes}")
    with atomic_path(root, directory=True) as staging:
        rows = _write_samples(staging, classes, samples)
        write_index(staging, classes, rows, source, skipped, extra)
    return load_prepared_dataset(root)


def write_index(
    directory: Path,
    classes: list[str],
    rows: Iterable[dict[str, Any]],
    source: dict[str, Any],
    skipped: Iterable[dict[str, str]] = (),
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``manifest.csv``, ``classes.json`` and, last, ``summary.json`` for images already in ``directory``.

    ``rows`` are the images' manifest rows (:data:`MANIFEST_FIELDS`), in order; they are read once.
    """
    counts: Counter[tuple[str, str]] = Counter()
    with open(directory / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS)
        writer.writeheader()
        for row in rows:  # one pass: ``rows`` may be a generator
            writer.writerow(row)
            counts[(row["split"], row["class"])] += 1
    (directory / "classes.json").write_text(json.dumps(classes, indent=2))
    skipped = list(skipped)
    summary = {
        "classes": classes,
        "counts": {
            split: {label: counts[(split, label)] for label in classes}
            for split in SPLITS
            if any(counts[(split, label)] for label in classes)
        },
        "total": sum(counts.values()),
        "skipped": skipped,
        "skipped_by_reason": dict(Counter(entry["reason"] for entry in skipped)),
        "source": source,
        **(extra or {}),
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=2))


def _write_samples(directory: Path, classes: list[str], samples: Iterable[Sample]) -> list[dict[str, Any]]:
    """Write each sample's image under ``directory/split/class/``; its manifest rows, in order."""
    counts: Counter[tuple[str, str]] = Counter()
    rows: list[dict[str, Any]] = []
    for sample in samples:
        if sample.split not in SPLITS or sample.label not in classes:
            raise ValueError(f"unexpected split/class {sample.split}/{sample.label}")
        counts[(sample.split, sample.label)] += 1
        name = sample.name or f"{counts[(sample.split, sample.label)]:06d}.jpg"
        relative = Path(sample.split) / sample.label / name
        payload = sample.data if sample.data is not None else encode_jpeg(sample.image, sample.quality)
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_bytes(payload)
        width, height = sample.image.size
        rows.append(
            {
                "split": sample.split,
                "class": sample.label,
                "path": relative.as_posix(),
                "width": width,
                "height": height,
                "bytes": len(payload),
                "md5": hashlib.md5(payload).hexdigest(),
            }
        )
    return rows


def prepared_dir(root: Path | str, name: str) -> Path:
    """``ROOT/processed/NAME``: where dataset ``name`` is prepared under the data directory ``root``."""
    return Path(root) / "processed" / name


def is_prepared(root: Path) -> bool:
    return (Path(root) / "summary.json").is_file()


def load_prepared_dataset(root: Path, hint: str = "") -> PreparedDataset:
    """Open a prepared dataset, or fail with a one-line message saying how to get it."""
    root = Path(root)
    if not is_prepared(root):
        how = f" Run `{hint}` to prepare it." if hint else ""
        raise DataError(f"No prepared dataset at {root}.{how}")
    summary = json.loads((root / "summary.json").read_text())
    classes = json.loads((root / "classes.json").read_text())
    return PreparedDataset(root=root, classes=classes, summary=summary)
