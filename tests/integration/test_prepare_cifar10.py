"""CIFAR-10: import the archive (or its folder) or download it over HTTP, then prepare it."""

from __future__ import annotations

import csv
import hashlib
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_classifier.data.__main__ import main
from image_classifier.data.sources.cifar10 import MD5

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(scope="module")
def archive(shared_data: Path) -> Path:
    return shared_data / "cifar-10-python.tar.gz"


def source_test_batch(archive: Path) -> dict:
    with tarfile.open(archive) as handle:
        member = handle.extractfile("cifar-10-batches-py/test_batch")
        assert member is not None
        return pickle.load(member, encoding="latin1")


def text(value: object) -> object:
    return value.decode() if isinstance(value, bytes) else value


def summary(root: Path) -> dict:
    return json.loads((root / "processed" / "cifar10" / "summary.json").read_text())


def test_import_keeps_the_source_splits_and_labels(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["cifar10", "--source", str(archive), "--root", str(tmp_path)]) == 0
    assert "cifar10 ready" in capsys.readouterr().out
    prepared = summary(tmp_path)
    assert prepared["classes"] == CLASSES
    assert prepared["counts"] == {
        "train": dict.fromkeys(CLASSES, 90),
        "val": dict.fromkeys(CLASSES, 10),
        "test": dict.fromkeys(CLASSES, 50),
    }
    assert prepared["skipped"] == [] and prepared["total"] == 1500

    batch = {text(k): v for k, v in source_test_batch(archive).items()}
    pixels = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    for index in (0, 137, 499):
        name = Path(text(batch["filenames"][index]))
        label = CLASSES[batch["labels"][index]]
        stored = tmp_path / "processed" / "cifar10" / "test" / label / f"{name.stem}.png"
        assert np.array_equal(np.asarray(Image.open(stored)), pixels[index])

    with open(tmp_path / "processed" / "cifar10" / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1500
    row = rows[0]
    assert hashlib.md5((tmp_path / "processed" / "cifar10" / row["path"]).read_bytes()).hexdigest() == row["md5"]


def test_rerunning_is_a_no_op_and_the_split_is_seeded(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    unpacked = tmp_path / "unpacked"
    shutil.unpack_archive(archive, unpacked)
    assert main(["cifar10", "--source", str(unpacked), "--root", str(tmp_path / "a")]) == 0
    manifest = tmp_path / "a" / "processed" / "cifar10" / "manifest.csv"
    before = manifest.stat().st_mtime_ns
    assert main(["cifar10", "--root", str(tmp_path / "a")]) == 0
    assert "already prepared" in capsys.readouterr().out
    assert manifest.stat().st_mtime_ns == before

    assert main(["cifar10", "--source", str(archive), "--root", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "processed" / "cifar10" / "manifest.csv").read_bytes() == manifest.read_bytes()


def write_config(path: Path, url: str, md5: str | None = None) -> Path:
    path.write_text(f"name: cifar10\nprepare:\n  url: {url}\n" + (f"  md5: {md5}\n" if md5 else ""))
    return path


def test_download_with_a_wrong_checksum_fails_clearly_and_keeps_nothing(
    archive: Path, http_server: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    url, served = http_server
    shutil.copy(archive, served / archive.name)
    config = write_config(tmp_path / "cifar10.yaml", f"{url}/{archive.name}")  # the published md5: not this sample's
    root = tmp_path / "data"
    with pytest.raises(SystemExit) as exit_info:
        main(["cifar10", "--root", str(root), "--config", str(config)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: Checksum mismatch") and MD5 in error and error.count("\n") == 1
    assert not root.exists(), "nothing is kept, not even the folders made for the download"


def test_download_verified_by_its_checksum_prepares(
    archive: Path, http_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, served = http_server
    shutil.copy(archive, served / archive.name)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    config = write_config(tmp_path / "cifar10.yaml", f"{url}/{archive.name}", md5)
    assert main(["cifar10", "--root", str(tmp_path / "data"), "--config", str(config)]) == 0
    assert summary(tmp_path / "data")["total"] == 1500
    assert sorted(p.name for p in (tmp_path / "data" / "raw" / "cifar10").iterdir()) == ["cifar-10-batches-py"]
