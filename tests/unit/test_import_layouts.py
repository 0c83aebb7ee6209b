"""Importing a user's photos: every accepted layout becomes the same prepared dataset, config and report."""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from image_classifier.data.layout import load_prepared_dataset
from tests.helpers.importing import Project, make_project, run_data
from tests.helpers.photos import photo_folders, save_photo

CLASSES = {"chat noir": 10, "chien": 10, "été": 10}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(tmp_path, monkeypatch)


def split_folders(root: Path, names: dict[str, str], per_split: dict[str, int]) -> Path:
    """``root/<split folder>/<class>/`` with ``per_split[split]`` photos per class."""
    seed = 0
    for split, folder in names.items():
        for label in CLASSES:
            for i in range(per_split[split]):
                seed += 1
                save_photo(root / folder / label / f"{label} {i}.jpg", seed)
    return root


def per_split(project: Project, name: str) -> dict[str, int]:
    return {split: sum(counts.values()) for split, counts in project.summary(name)["counts"].items()}


def test_class_folders_get_seeded_stratified_splits_and_a_config(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", CLASSES)
    code, out, err = run_data(project, capsys, "pets", "--source", str(source))
    assert code == 0, err
    summary = project.summary("pets")
    assert summary["classes"] == ["chat noir", "chien", "été"]  # sorted, Unicode and spaces kept
    assert summary["counts"] == {
        split: dict.fromkeys(CLASSES, n) for split, n in (("train", 8), ("val", 1), ("test", 1))
    }
    assert summary["layout"] == "class folders"
    assert (project.data / "raw" / "pets" / "chien" / "chien_3.jpg").is_file(), "the raw copy is under raw/NAME"
    config = OmegaConf.load(project.config("pets"))
    assert list(config.defaults) == ["default", "_self_"] and config.name == "pets"
    assert config.prepare.source == str(source) and config.prepare.val_fraction == 0.1
    assert config.image_size == 48, "48 px photos: the largest standard size not above their shorter side"
    assert f"dvc add {project.data / 'raw' / 'pets'}" in out
    assert 'invoke train "experiment=finetune_cpu data=pets' in out
    assert (project.root / "reports" / "data" / "pets" / "quality.md").is_file()
    assert load_prepared_dataset(project.prepared("pets")).fingerprint


def test_the_same_source_and_seed_give_the_same_fingerprint(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", CLASSES)
    assert run_data(project, capsys, "a", "--source", str(source))[0] == 0
    assert run_data(project, capsys, "b", "--source", str(source))[0] == 0
    assert project.manifest("a") == project.manifest("b")
    assert run_data(project, capsys, "c", "--source", str(source), "--seed", "3")[0] == 0
    assert project.manifest("c") != project.manifest("a"), "another seed carves other photos out"


def test_split_folder_synonyms_wrappers_and_mixed_extensions(project: Project, tmp_path, capsys) -> None:
    top = tmp_path / "download" / "My Photos"
    split_folders(top, {"train": "Training", "val": "valid", "test": "Testing"}, {"train": 6, "val": 2, "test": 2})
    formats = ((".PNG", "PNG"), (".jpeg", "JPEG"), (".webp", "WEBP"), (".bmp", "BMP"), (".JPG", "JPEG"))
    for n, (suffix, fmt) in enumerate(formats):
        save_photo(top / "Training" / "chien" / f"extra{suffix}", 50_000 + n, fmt=fmt)
    (top / "Training" / "chien" / ".DS_Store").write_bytes(b"\0\0")
    (top / "Training" / "chien" / "Thumbs.db").write_bytes(b"\0\0")
    code, _, err = run_data(project, capsys, "pets", "--source", str(tmp_path / "download"))
    assert code == 0, err
    summary = project.summary("pets")
    assert summary["counts"]["train"] == {"chat noir": 6, "chien": 11, "été": 6}, "the source's own splits are kept"
    assert per_split(project, "pets") == {"train": 23, "val": 6, "test": 6}
    extras = sorted(p.name for p in (project.prepared("pets") / "train" / "chien").glob("extra*"))
    assert len(extras) == 5 and all(name.endswith((".jpg", ".jpeg")) for name in extras), extras
    reasons = {entry["path"].rsplit("/", 1)[-1]: entry["reason"] for entry in summary["skipped"]}
    assert reasons == {".DS_Store": "hidden file", "Thumbs.db": "system file"}


def test_a_missing_split_is_carved_from_train_only(project: Project, tmp_path, capsys) -> None:
    source = split_folders(tmp_path / "photos", {"train": "train", "test": "test"}, {"train": 10, "test": 3})
    assert run_data(project, capsys, "pets", "--source", str(source))[0] == 0
    assert per_split(project, "pets") == {"train": 27, "val": 3, "test": 9}


def _archive(source: Path, archive: Path) -> Path:
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive, "w") as handle:
            for path in sorted(source.rglob("*")):
                handle.write(path, Path("photos") / path.relative_to(source))
            handle.writestr("__MACOSX/photos/._chien_0.jpg", b"\0\5\26\7 resource fork")
    else:
        mode = {".tar": "w", ".gz": "w:gz", ".tgz": "w:gz"}[archive.suffix]
        with tarfile.open(archive, mode) as handle:
            handle.add(source, arcname="photos")
    return archive


@pytest.mark.parametrize("archive_name", ["photos.zip", "photos.tar", "photos.tar.gz", "photos.tgz"])
def test_archives_of_split_folders(project: Project, tmp_path, capsys, archive_name: str) -> None:
    source = split_folders(tmp_path / "photos", {"train": "train", "val": "val"}, {"train": 8, "val": 2})
    archive = _archive(source, tmp_path / archive_name)
    code, _, err = run_data(project, capsys, "pets", "--source", str(archive))
    assert code == 0, err
    assert per_split(project, "pets") == {"train": 21, "val": 6, "test": 3}
    if archive_name.endswith(".zip"):
        assert {"path": "__MACOSX/", "reason": "macOS archive metadata"} in project.summary("pets")["skipped"]


def _write_list(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    path.write_text("\n".join(delimiter.join(row) for row in rows) + "\n", encoding="utf-8")
    return path


def test_a_csv_list_with_a_header_and_a_split_column(project: Project, tmp_path, capsys) -> None:
    folder = tmp_path / "shoot"
    rows = [["filename", "label", "split"]]
    for i in range(24):
        label, split = ("ok", "nok")[i % 2], "train" if i < 18 else ("validation" if i < 21 else "test")
        save_photo(folder / "images" / f"{i:03d}.png", 900 + i)
        rows.append([f"images/{i:03d}.png", label, split])
    code, _, err = run_data(project, capsys, "parts", "--source", str(_write_list(folder / "labels.csv", rows)))
    assert code == 0, err
    assert per_split(project, "parts") == {"train": 18, "val": 3, "test": 3}
    assert project.summary("parts")["layout"] == "list (labels.csv)"
    assert (project.data / "raw" / "parts" / "labels.csv").is_file()
    assert (project.data / "raw" / "parts" / "images" / "000.png").is_file()


def test_a_tsv_list_without_header_or_split_column(project: Project, tmp_path, capsys) -> None:
    folder = tmp_path / "shoot"
    rows = []
    for i in range(20):
        save_photo(folder / f"p{i}.jpg", 700 + i)
        rows.append([f"p{i}.jpg", ("left", "right")[i % 2]])
    code, _, err = run_data(project, capsys, "sides", "--source", str(_write_list(folder / "x.tsv", rows, "\t")))
    assert code == 0, err
    assert project.summary("sides")["counts"] == {
        "train": {"left": 8, "right": 8}, "val": {"left": 1, "right": 1}, "test": {"left": 1, "right": 1}
    }  # fmt: skip


def test_the_same_file_name_in_two_classes_keeps_both(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", {"a": 10, "b": 10})
    for label, seed in (("a", 1), ("b", 2)):
        save_photo(source / label / "IMG_0001.jpg", 77_000 + seed)
    assert run_data(project, capsys, "pets", "--source", str(source))[0] == 0
    named = [row for row in project.manifest("pets") if row["path"].endswith("IMG_0001.jpg")]
    assert sorted(row["class"] for row in named) == ["a", "b"]
    assert len({row["md5"] for row in named}) == 2


def test_a_symlink_loop_is_skipped_and_counted(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", {"a": 10, "b": 10})
    os.symlink("..", source / "a" / "loop")
    code, _, err = run_data(project, capsys, "pets", "--source", str(source))
    assert code == 0, err
    assert {"path": "a/loop/", "reason": "symlink loop (a folder already read)"} in project.summary("pets")["skipped"]
    assert Counter(row["class"] for row in project.manifest("pets")) == {"a": 10, "b": 10}


def test_kaggle_style_split_folders_with_an_unlabelled_folder_to_predict(project: Project, tmp_path, capsys) -> None:
    top = tmp_path / "archive"
    photo_folders(top / "seg_train" / "seg_train", {"forest": 10, "sea": 10})
    photo_folders(top / "seg_test" / "seg_test", {"forest": 2, "sea": 2}, seed=1)
    for i in range(3):
        save_photo(top / "seg_pred" / "seg_pred" / f"{i}.jpg", 4000 + i)
    code, _, err = run_data(project, capsys, "scenes", "--source", str(top))
    assert code == 0, err
    assert per_split(project, "scenes") == {"train": 18, "val": 2, "test": 4}
    assert {"path": "seg_pred/", "reason": "unlabelled photos (a folder to predict, beside the splits)"} in (
        project.summary("scenes")["skipped"]
    )
