"""The data-quality report: duplicates and leakage across splits, label conflicts, --dedupe, contact sheets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import SHARED_DATA
from tests.helpers.importing import Project, make_project, run_data
from tests.helpers.photos import photo_folders, resized_jpeg

CLASSES = {"cat": 10, "dog": 10}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(tmp_path, monkeypatch)


def real_photo_folders(root: Path) -> Path:
    """Ten real photos per class from the shared samples (the tests using it skip where they are absent)."""
    source = SHARED_DATA / "dogs-vs-cats" / "train"
    if not source.is_dir():
        pytest.skip(f"real-photo samples not found at {source}")
    for label in CLASSES:
        for path in sorted(source.glob(f"{label}.*.jpg"))[:10]:
            (root / "train" / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, root / "train" / label / path.name)
    return root


def leaky_source(root: Path, real: bool) -> tuple[Path, str, str]:
    """Train, val and test folders; test holds a copy of one train photo and a resized re-encoded other."""
    if real:
        real_photo_folders(root)
    else:
        photo_folders(root / "train", CLASSES)
    photo_folders(root / "val", {"cat": 2, "dog": 2}, seed=8)
    photo_folders(root / "test", {"cat": 2, "dog": 2}, seed=9)
    copied, resized = sorted((root / "train" / "cat").iterdir())[:2]
    shutil.copy(copied, root / "test" / "cat" / "copy.jpg")
    (root / "test" / "dog" / "resized.jpg").write_bytes(resized_jpeg(resized, 0.8, 85))
    return root, copied.name, resized.name


def group_with(groups: list[dict], name: str) -> dict:
    return next(group for group in groups if any(f["path"].endswith(name) for f in group["files"]))


@pytest.mark.parametrize("real", [False, True], ids=["drawn", "real"])
def test_a_copied_and_a_resized_photo_in_test_are_cross_split_duplicates(project, tmp_path, capsys, real) -> None:
    source, copied, resized = leaky_source(tmp_path / "photos", real)
    code, out, err = run_data(project, capsys, "pets", "--source", str(source))
    assert code == 0, err
    quality = project.quality("pets")
    exact = group_with(quality["exact_duplicates"], "copy.jpg")
    assert exact["cross_split"] and {(f["split"], f["path"].rsplit("/", 1)[1]) for f in exact["files"]} == {
        ("train", copied), ("test", "copy.jpg")
    }  # fmt: skip
    near = group_with(quality["near_duplicates"], "resized.jpg")
    assert near["cross_split"] and near["distance"] <= 10 and near["files"][0]["path"].endswith(resized)
    assert [(f["split"], f["class"]) for f in near["files"]] == [("train", "cat"), ("test", "dog")]
    assert near["conflict"], "the resized copy is filed under another class: a labelling conflict"
    assert len(quality["exact_duplicates"]) == 1 and len(quality["near_duplicates"]) == 1, "nothing else flagged"
    assert quality["leakage"] == {"groups": 2} and quality["label_conflicts"] == {"groups": 1}
    assert "2 across splits (leakage); 1 label conflicts" in out
    assert f"leakage: the same photo in train and test: train/cat/{copied}, test/cat/copy.jpg" in err
    assert "label conflict: the same photo under different classes" in err


def test_dedupe_removes_the_test_copies_and_records_them(project: Project, tmp_path, capsys) -> None:
    source, copied, _ = leaky_source(tmp_path / "photos", real=False)
    code, out, err = run_data(project, capsys, "pets", "--source", str(source), "--dedupe")
    assert code == 0, err
    quality = project.quality("pets")
    removed = {entry["path"]: entry["duplicate_of"] for entry in quality["removed"]}
    assert removed == {"test/cat/copy.jpg": [f"train/cat/{copied}"], "test/dog/resized.jpg": [removed_train(quality)]}
    assert quality["leakage"] == {"groups": 0} and not quality["exact_duplicates"]
    assert not (project.prepared("pets") / "test" / "cat" / "copy.jpg").exists()
    assert {row["path"] for row in project.manifest("pets")}.isdisjoint(removed)
    assert project.summary("pets")["counts"]["test"] == {"cat": 2, "dog": 2}
    assert "2 leaked copies removed (--dedupe)" in out
    assert "dedupe: true" in project.config("pets").read_text()


def removed_train(quality: dict) -> str:
    return next(entry["duplicate_of"][0] for entry in quality["removed"] if entry["path"].endswith("resized.jpg"))


def test_the_same_photo_in_two_classes_is_a_label_conflict(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", CLASSES)
    shutil.copy(source / "cat" / "cat_0.jpg", source / "dog" / "cat_0.jpg")
    assert run_data(project, capsys, "pets", "--source", str(source))[0] == 0
    (group,) = project.quality("pets")["exact_duplicates"]
    assert group["conflict"] and sorted(f["class"] for f in group["files"]) == ["cat", "dog"]


def test_counts_imbalance_sizes_and_contact_sheets(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", {"big": 30, "small": 6})
    assert run_data(project, capsys, "pets", "--source", str(source))[0] == 0
    quality = project.quality("pets")
    assert quality["counts"]["per_class"] == {"big": 30, "small": 6} and quality["counts"]["imbalance_ratio"] == 5.0
    assert quality["sizes"]["shorter_side"]["median"] == 48
    assert "imbalance: 'big' has 5x the photos of 'small'" in quality["warnings"]
    report = project.root / "reports" / "data" / "pets"
    for label, rows in (("big", 4), ("small", 1)):
        with Image.open(report / "contact_sheets" / f"{label}.png") as sheet:
            assert sheet.width == 8 * 100 + 4 and sheet.height == 28 + rows * 100 + 4
    assert "![small](contact_sheets/small.png)" in (report / "quality.md").read_text()


def test_the_report_command_writes_the_report_again(project: Project, tmp_path, capsys) -> None:
    source, _, _ = leaky_source(tmp_path / "photos", real=False)
    assert run_data(project, capsys, "pets", "--source", str(source))[0] == 0
    first = project.quality("pets")
    shutil.rmtree(project.root / "reports")
    (project.prepared("pets") / "quality.json").unlink()
    code, out, _ = run_data(project, capsys, "report", "pets")
    assert code == 0 and out.startswith("quality: 30 photos in 2 classes")
    again = project.quality("pets")
    assert again["leakage"] == first["leakage"] and again["counts"] == first["counts"]
    assert (project.root / "reports" / "data" / "pets" / "contact_sheets" / "dog.png").is_file()
