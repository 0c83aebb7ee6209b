"""Bad input to an import: a one-line ``error:`` or a counted skip, and nothing half-written."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers.importing import Project, make_project, run_data
from tests.helpers.photos import photo_folders, save_photo


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return make_project(tmp_path, monkeypatch)


def refused(project: Project, capsys, *argv: str) -> str:
    """The one error line of a refused import; asserts nothing of it was written."""
    code, out, err = run_data(project, capsys, *argv)
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    name = argv[0]
    assert not (project.data / "processed" / name).exists() and not (project.data / "raw" / name).exists()
    assert not project.config(name).exists()
    assert (
        not any(path.name.endswith(".partial") for path in project.data.rglob("*")) if project.data.exists() else True
    )
    return lines[0]


def test_an_empty_folder(project: Project, tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert "No photos in" in refused(project, capsys, "pets", "--source", str(tmp_path / "empty"))


def test_one_class_only(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", {"cat": 12})
    assert "Only one class ('cat')" in refused(project, capsys, "pets", "--source", str(source))


def test_a_class_too_small_to_split_names_the_class_and_its_count(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", {"cat": 12, "dog": 12, "owl": 3})
    error = refused(project, capsys, "pets", "--source", str(source))
    assert "Class 'owl' has 3 usable photos" in error and "at least 6" in error


def test_photos_without_class_folders(project: Project, tmp_path, capsys) -> None:
    for i in range(4):
        save_photo(tmp_path / "flat" / f"{i}.jpg", i)
    assert "4 photos in" in refused(project, capsys, "pets", "--source", str(tmp_path / "flat"))


def test_non_images_hidden_files_and_thumbs_db_are_skipped_and_counted(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", {"cat": 10, "dog": 10})
    (source / "cat" / "notes.txt").write_text("not a photo")
    (source / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (source / "dog" / ".hidden.jpg").write_bytes(b"x")
    (source / "dog" / "Thumbs.db").write_bytes(b"x")
    (source / ".git").mkdir()
    (source / ".git" / "HEAD").write_text("ref")
    code, out, err = run_data(project, capsys, "pets", "--source", str(source))
    assert code == 0, err
    skipped = {entry["path"]: entry["reason"] for entry in project.summary("pets")["skipped"]}
    assert skipped.pop("cat/broken.jpg").startswith(("truncated or corrupt", "not an image"))
    assert skipped == {"cat/notes.txt": "not an image (.txt)", "dog/.hidden.jpg": "hidden file",
                       "dog/Thumbs.db": "system file", ".git/": "hidden folder"}  # fmt: skip
    assert not (project.data / "raw" / "pets" / ".git").exists(), "a hidden folder is not copied"
    assert "5 skipped" in out and project.quality("pets")["skipped"]["total"] == 5
    first = project.summary("pets")["skipped"]
    code, out, err = run_data(project, capsys, "pets", "--force")  # prepared again from raw/pets, as dvc repro does
    assert code == 0, err
    assert project.summary("pets")["skipped"] == first, "what the copy left out is reported again"


def test_class_folders_nested_deeper_than_expected(project: Project, tmp_path, capsys) -> None:
    photo_folders(tmp_path / "photos" / "animals", {"cat": 8, "dog": 8})
    photo_folders(tmp_path / "photos" / "plants", {"rose": 8, "tulip": 8}, seed=1)
    error = refused(project, capsys, "pets", "--source", str(tmp_path / "photos"))
    assert "nested deeper than expected" in error and "'animals' holds cat, dog" in error


def test_photos_in_a_subfolder_of_a_class_are_skipped_and_counted(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", {"cat": 10, "dog": 10})
    save_photo(source / "cat" / "more" / "x.jpg", 999)
    assert run_data(project, capsys, "pets", "--source", str(source))[0] == 0
    assert {"path": "cat/more/x.jpg", "reason": "nested deeper than its class folder 'cat'"} in project.summary("pets")[
        "skipped"
    ]


def test_split_folders_beside_other_folders_are_ambiguous(project: Project, tmp_path, capsys) -> None:
    photo_folders(tmp_path / "photos" / "train", {"cat": 8, "dog": 8})
    photo_folders(tmp_path / "photos" / "extra", {"cat": 8}, seed=1)
    error = refused(project, capsys, "pets", "--source", str(tmp_path / "photos"))
    assert "mixes split folders (train) with other folders (extra)" in error and "accepted:" in error


def _list(tmp_path: Path, rows: list[str]) -> Path:
    folder = tmp_path / "shoot"
    for i in range(12):
        save_photo(folder / f"{i}.jpg", 500 + i)
    (folder / "labels.csv").write_text(
        "path,label,split\n" + "".join(f"{i}.jpg,{('a', 'b')[i % 2]},\n" for i in range(12)) + "\n".join(rows) + "\n"
    )
    return folder / "labels.csv"


def test_a_csv_with_missing_files_and_blank_labels_skips_and_counts_them(project: Project, tmp_path, capsys) -> None:
    listing = _list(tmp_path, ["gone.jpg,a,train", "0.jpg,,train", ",a,"])
    code, _, err = run_data(project, capsys, "pets", "--source", str(listing))
    assert code == 0, err
    assert project.summary("pets")["skipped"] == [
        {"path": "gone.jpg", "reason": "file not found (labels.csv line 14)"},
        {"path": "0.jpg", "reason": "no label (labels.csv line 15)"},
        {"path": "labels.csv line 16", "reason": "no path"},
    ]


def test_a_csv_with_an_unknown_split_name(project: Project, tmp_path, capsys) -> None:
    error = refused(project, capsys, "pets", "--source", str(_list(tmp_path, ["1.jpg,a,holdout"])))
    assert "labels.csv line 14: unknown split 'holdout'" in error


@pytest.mark.parametrize("path", ["../outside.jpg", "/etc/passwd", "sub/../../x.jpg"])
def test_a_csv_path_outside_its_folder(project: Project, tmp_path, capsys, path: str) -> None:
    error = refused(project, capsys, "pets", "--source", str(_list(tmp_path, [f"{path},a,train"])))
    assert f"path '{path}' is outside the folder of labels.csv" in error


def test_a_zip_member_that_leaves_the_target(project: Project, tmp_path, capsys) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("photos/cat/1.jpg", b"x")
        handle.writestr("../../escaped.jpg", b"x")
    error = refused(project, capsys, "pets", "--source", str(archive))
    assert "member '../../escaped.jpg' would be written outside the folder" in error
    assert not (tmp_path / "escaped.jpg").exists() and not (project.data / "escaped.jpg").exists()


def test_a_tar_member_that_leaves_the_target(project: Project, tmp_path, capsys) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        info = tarfile.TarInfo("../escaped.jpg")
        info.size = 1
        handle.addfile(info, io.BytesIO(b"x"))
    error = refused(project, capsys, "pets", "--source", str(archive))
    assert "member '../escaped.jpg' would be written outside the folder" in error


def test_a_file_that_is_neither_folder_archive_nor_list(project: Project, tmp_path, capsys) -> None:
    (tmp_path / "photo.jpg").write_bytes(b"x")
    assert "is not a folder, an archive or a CSV/TSV list" in refused(
        project, capsys, "pets", "--source", str(tmp_path / "photo.jpg")
    )


@pytest.mark.parametrize("name", ["default", "1st", "a/b", "my.photos"])
def test_a_name_that_cannot_name_a_dataset(project: Project, tmp_path, capsys, name: str) -> None:
    source = photo_folders(tmp_path / "photos", {"a": 10, "b": 10})
    code, _, err = run_data(project, capsys, name, "--source", str(source))
    assert code == 2 and "cannot name a dataset" in err


def test_an_unknown_name_without_source_says_how_to_import(project: Project, capsys) -> None:
    code, _, err = run_data(project, capsys, "birds")
    assert code == 2 and "Unknown dataset 'birds'" in err and "invoke data birds --source PATH" in err


def test_a_taken_name_is_refused_unless_forced(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", {"a": 10, "b": 10})
    assert run_data(project, capsys, "pets", "--source", str(source))[0] == 0
    before = project.manifest("pets")
    code, _, err = run_data(project, capsys, "pets", "--source", str(source), "--seed", "5")
    assert code == 2 and "The name 'pets' is taken" in err and "--force" in err
    assert project.manifest("pets") == before
    assert run_data(project, capsys, "pets", "--source", str(source), "--seed", "5", "--force")[0] == 0
    assert project.manifest("pets") != before
    project.config("hand").write_text("defaults:\n  - default\n  - _self_\nname: hand\nimage_size: 32\n")
    code, _, err = run_data(project, capsys, "hand", "--source", str(source))
    assert code == 2 and f"{project.config('hand')} exists" in err


def test_a_failed_reimport_leaves_the_prepared_data_as_it_was(project: Project, tmp_path, capsys) -> None:
    source = photo_folders(tmp_path / "photos", {"a": 10, "b": 10})
    assert run_data(project, capsys, "pets", "--source", str(source))[0] == 0
    before, config = project.manifest("pets"), project.config("pets").read_text()
    (tmp_path / "empty").mkdir()
    code, _, err = run_data(project, capsys, "pets", "--source", str(tmp_path / "empty"), "--force")
    assert code == 2 and "No photos" in err
    assert project.manifest("pets") == before and project.config("pets").read_text() == config
    assert sorted(p.name for p in (project.data / "raw" / "pets").iterdir()) == ["a", "b"]
