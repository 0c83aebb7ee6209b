"""Dogs vs. Cats: labels from file names, seeded stratified splits, bad files converted or skipped and counted."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from image_classifier.data.__main__ import main
from tests.unit.test_sources_images import png_header_only

FRACTIONS = {"train": 120, "val": 15, "test": 15}


@pytest.fixture(scope="module")
def source(shared_data: Path) -> Path:
    return shared_data / "dogs-vs-cats" / "train"


def prepare(source: Path, root: Path) -> dict:
    assert main(["cats_vs_dogs", "--source", str(source), "--root", str(root)]) == 0
    return json.loads((root / "processed" / "cats_vs_dogs" / "summary.json").read_text())


def test_labels_come_from_file_names_with_stratified_splits(source: Path, tmp_path: Path) -> None:
    summary = prepare(source, tmp_path)
    assert summary["classes"] == ["cat", "dog"]
    assert summary["counts"] == {split: {"cat": n, "dog": n} for split, n in FRACTIONS.items()}
    prepared = tmp_path / "processed" / "cats_vs_dogs"
    for label in ("cat", "dog"):
        names = {p.name for split in FRACTIONS for p in (prepared / split / label).iterdir()}
        assert names == {p.name for p in source.glob(f"{label}.*.jpg")}


def test_the_competition_zip_with_train_zip_inside_gives_the_same_split(source: Path, tmp_path: Path) -> None:
    inner = tmp_path / "train.zip"
    with zipfile.ZipFile(inner, "w") as handle:
        for path in sorted(source.iterdir()):
            handle.write(path, f"train/{path.name}")
    competition = tmp_path / "dogs-vs-cats.zip"
    with zipfile.ZipFile(competition, "w") as handle:
        handle.write(inner, "train.zip")
        handle.writestr("sampleSubmission.csv", "id,label\n1,0\n")
    prepare(competition, tmp_path / "a")
    prepare(source, tmp_path / "b")
    manifests = [(tmp_path / r / "processed" / "cats_vs_dogs" / "manifest.csv").read_text() for r in ("a", "b")]
    assert manifests[0] == manifests[1]


def salt(folder: Path) -> None:
    """Add the kinds of bad files real downloads contain, each named like a labelled image."""
    good = next(folder.glob("cat.*.jpg")).read_bytes()
    (folder / "cat.90001.jpg").write_bytes(good[: len(good) // 3])
    (folder / "dog.90002.jpg").write_text("<html>not an image</html>")
    (folder / "cat.90003.png").write_bytes(png_header_only(40_000, 40_000))
    Image.new("RGB", (1, 1)).save(folder / "dog.90004.jpg")
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(folder / "cat.90005.jpg")
    Image.new("RGB", (64, 48), (0, 0, 255)).convert("P").save(folder / "dog.90006.png")
    Image.new("L", (64, 48), 128).save(folder / "cat.90007.jpg")
    Image.new("RGBA", (64, 48), (255, 0, 0, 0)).save(folder / "dog.90008.png")
    Image.new("RGB", (2000, 1000), (9, 9, 9)).save(folder / "cat.90009.jpg")
    (folder / "README.txt").write_text("labels are in the file names")


def test_a_salted_copy_reports_bad_files_as_skipped_and_counted(source: Path, tmp_path: Path) -> None:
    salted = tmp_path / "train"
    shutil.copytree(source, salted)
    salt(salted)
    summary = prepare(salted, tmp_path / "data")

    reasons = {entry["path"].rsplit("/", 1)[-1]: entry["reason"] for entry in summary["skipped"]}
    assert set(reasons) == {"cat.90001.jpg", "dog.90002.jpg", "cat.90003.png", "dog.90004.jpg", "README.txt"}
    assert reasons["cat.90001.jpg"].startswith("truncated or corrupt")
    assert reasons["dog.90002.jpg"] == "not an image"
    assert reasons["cat.90003.png"].startswith("too large")
    assert reasons["dog.90004.jpg"].startswith("too small")
    assert reasons["README.txt"] == "no cat/dog label in the file name"
    assert sum(summary["skipped_by_reason"].values()) == 5
    assert summary["converted"] == {
        "CMYK converted to RGB": 1,
        "P converted to RGB": 1,
        "L converted to RGB": 1,
        "RGBA flattened onto white": 1,
        "downscaled to 512 px": 1,
    }
    assert summary["total"] == 305
    assert sum(n for split in summary["counts"].values() for n in split.values()) == 305

    prepared = tmp_path / "data" / "processed" / "cats_vs_dogs"
    for path in prepared.glob("*/*/*"):
        with Image.open(path) as image:
            image.load()
            assert image.mode == "RGB" and max(image.size) <= 512 and min(image.size) >= 8
