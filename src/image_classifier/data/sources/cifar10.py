"""CIFAR-10: the python archive from the University of Toronto, verified by its published md5."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from image_classifier.data.sources.archive import unpack
from image_classifier.data.sources.base import Candidate, Collected, PrepareSettings
from image_classifier.data.sources.download import download_file
from image_classifier.data.sources.prepare import DatasetSource
from image_classifier.data.sources.splits import stratified_split
from image_classifier.errors import DataError

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"


def fetch(dest: Path, settings: PrepareSettings) -> None:
    archive = download_file(settings.url or URL, dest / ARCHIVE, md5=settings.md5 or MD5)
    unpack(archive, dest)
    archive.unlink()


def _text(value: Any) -> Any:
    return value.decode("latin1") if isinstance(value, bytes) else value


def _load(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """A pickled CIFAR batch, with its keys (and byte-string names) as ``str`` whichever Python wrote it."""
    try:
        with open(path, "rb") as handle:
            content = {_text(key): value for key, value in pickle.load(handle, encoding="latin1").items()}
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, AttributeError) as error:
        raise DataError(f"{path} is not a readable CIFAR-10 batch: {error}") from error
    missing = [key for key in keys if key not in content]
    if missing:
        raise DataError(f"{path} is not a CIFAR-10 batch: it has no {', '.join(missing)}.")
    return content


def _batches_dir(raw: Path) -> Path:
    found = sorted(raw.rglob("batches.meta"), key=lambda p: len(p.parts))
    if not found:
        raise DataError(
            f"No CIFAR-10 batches (cifar-10-batches-py/batches.meta) under {raw}: "
            f"pass --source with {ARCHIVE} or its unpacked folder."
        )
    return found[0].parent


def _batch_candidates(batches: Path, batch: str, split: str, label_names: list[str]) -> list[Candidate]:
    path = batches / batch
    if not path.is_file():
        raise DataError(f"CIFAR-10 batch {batch} is missing from {batches}.")
    content = _load(path, ("data", "labels", "filenames"))
    pixels = np.asarray(content["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels, names = content["labels"], [_text(name) for name in content["filenames"]]
    if not len(pixels) == len(labels) == len(names):
        raise DataError(f"CIFAR-10 batch {path} has {len(pixels)} images but {len(labels)} labels.")
    return [
        Candidate(split=split, label=label_names[label], origin=f"{batch}[{index}]", image=pixels[index], name=name)
        for index, (label, name) in enumerate(zip(labels, names, strict=True))
    ]


def collect(raw: Path, settings: PrepareSettings) -> Collected:
    """Train batches 1-5 (a seeded stratified share held out as val) and the test batch."""
    batches = _batches_dir(raw)
    label_names = [_text(name) for name in _load(batches / "batches.meta", ("label_names",))["label_names"]]
    train = [c for batch in TRAIN_BATCHES for c in _batch_candidates(batches, batch, "train", label_names)]
    splits = stratified_split(
        [(c.origin, c.label) for c in train], {"val": settings.val_fraction}, settings.seed, "train"
    )
    train = [replace(c, split=splits[c.origin]) for c in train]
    test = _batch_candidates(batches, TEST_BATCH, "test", label_names)
    return Collected(classes=sorted(label_names), candidates=train + test)


SOURCE = DatasetSource(
    name="cifar10",
    title="CIFAR-10",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    license="No explicit license; cite Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images",
    fetch=fetch,
    collect=collect,
)
