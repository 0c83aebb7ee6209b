"""Animals-V2 out of Kaggle's V3 download: only the 10-class V2 tree is prepared, never V3's classes or images."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from image_classifier.data.__main__ import main

V2 = ["Cat", "Cow", "Dog", "Elephant", "Gorilla", "Hippo", "Monkey", "Panda", "Tiger", "Zebra"]
V3_GUESSED = sorted([*V2, "Bear", "Deer", "Fox", "Giraffe", "Lion"])
V3_KNOWN = sorted([*V2, "Beetle", "Butterfly", "Lizard", "Mouse", "Spider"])  # as a kagglehub cache of version 4 has
SPLITS = {"train": "Training Data", "val": "Validation Data", "test": "Testing Data"}
Files = dict[tuple[str, str, str], str]
"""``{(split, class, file name): md5}``"""


def write_tree(tree: Path, classes: list[str], *, doubled: bool, shade: int) -> Files:
    """Two 16x16 JPEGs per class and split in ``tree/<Split> Data[/<Split> Data]/<Class>/``, shaded ``shade``."""
    files: Files = {}
    for split, folder in SPLITS.items():
        for c, label in enumerate(classes):
            directory = tree / folder / folder if doubled else tree / folder
            (directory / label).mkdir(parents=True)
            for i in range(2):
                path = directory / label / f"{label}-{split} ({i + 1}).jpeg"
                Image.new("RGB", (16, 16), (shade, 10 * c, 100 * i + 40 * len(split))).save(path, "JPEG")
                files[(split, label, path.name)] = hashlib.md5(path.read_bytes()).hexdigest()
    return files


def prepared_files(processed: Path) -> Files:
    return {
        (path.parent.parent.name, path.parent.name, path.name): hashlib.md5(path.read_bytes()).hexdigest()
        for path in processed.glob("*/*/*")
        if path.is_file()
    }


def run_prepare(source: Path, root: Path) -> int:
    return main(["animals_v2", "--source", str(source), "--root", str(root)])


def v3_guessed(source: Path) -> Files:
    """``Animal-Data-V3/<Split> Data/<15 classes>/`` beside ``Animal-Data-V2/<Split> Data/<Split> Data/<10>/``."""
    write_tree(source / "Animal-Data-V3", V3_GUESSED, doubled=False, shade=250)
    return write_tree(source / "Animal-Data-V2", V2, doubled=True, shade=0)


def v3_at_root(source: Path) -> Files:
    """V3 at the top with Kaggle's doubled folders, the V2 tree in ``Animal-Data-V2/`` inside it."""
    write_tree(source, V3_KNOWN, doubled=True, shade=250)
    return write_tree(source / "Animal-Data-V2", V2, doubled=True, shade=0)


def v3_beside_unnamed_v2(source: Path) -> Files:
    """A V2 tree not named V2 (found by its ten classes) beside V3, both one level down in an archive folder."""
    write_tree(source / "archive" / "Animal-Data-V3", V3_GUESSED, doubled=True, shade=250)
    return write_tree(source / "archive" / "animals", V2, doubled=False, shade=0)


@pytest.mark.parametrize(("layout", "zipped"), [(v3_guessed, False), (v3_at_root, False), (v3_beside_unnamed_v2, True)])
def test_only_the_v2_tree_of_a_v3_download_is_prepared(
    layout: Callable[[Path], Files], zipped: bool, tmp_path: Path
) -> None:
    source = tmp_path / "download"
    expected = layout(source)
    if zipped:
        source = Path(shutil.make_archive(str(tmp_path / "download"), "zip", source))
    assert run_prepare(source, tmp_path / "data") == 0
    processed = tmp_path / "data" / "processed" / "animals_v2"
    summary = json.loads((processed / "summary.json").read_text())
    assert summary["classes"] == V2 == json.loads((processed / "classes.json").read_text())
    assert summary["counts"] == {split: dict.fromkeys(V2, 2) for split in SPLITS}
    assert prepared_files(processed) == expected  # the V2 files themselves, not V3's files of the same classes


@pytest.mark.parametrize("classes", [V2, ["Cat", "Dog", "Zebra"]])
def test_the_plain_v2_layout_still_works(classes: list[str], tmp_path: Path) -> None:
    expected = write_tree(tmp_path / "download", classes, doubled=True, shade=0)
    assert run_prepare(tmp_path / "download", tmp_path / "data") == 0
    processed = tmp_path / "data" / "processed" / "animals_v2"
    assert json.loads((processed / "classes.json").read_text()) == classes
    assert prepared_files(processed) == expected


def two_v2_copies(source: Path) -> list[str]:
    write_tree(source / "copy-a", V2, doubled=True, shade=0)
    write_tree(source / "copy-b", V2, doubled=False, shade=100)
    return ["'copy-a' (10 classes)", "'copy-b' (10 classes)"]


def no_v2_tree(source: Path) -> list[str]:
    write_tree(source / "Animal-Data-V3", V3_GUESSED, doubled=False, shade=250)
    write_tree(source / "other", ["Bear", "Lion"], doubled=True, shade=100)
    return ["'Animal-Data-V3' (15 classes)", "'other' (2 classes)"]


def v3_only(source: Path) -> list[str]:
    write_tree(source, V3_KNOWN, doubled=True, shade=250)
    return ["'.' (15 classes)"]


@pytest.mark.parametrize("layout", [two_v2_copies, no_v2_tree, v3_only])
def test_an_unclear_layout_is_a_one_line_error_naming_the_candidates(
    layout: Callable[[Path], list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = layout(tmp_path / "download")
    with pytest.raises(SystemExit) as exit_info:
        run_prepare(tmp_path / "download", tmp_path / "data")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1, error
    assert all(name in error for name in names), error
    assert "--source" in error
    assert not (tmp_path / "data" / "processed" / "animals_v2").exists()
