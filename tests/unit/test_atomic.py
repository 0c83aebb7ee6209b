"""Atomic writes: the target is complete or as it was, and nothing is left beside it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from image_classifier.atomic import atomic_path, write_text_atomic


def test_a_failing_block_leaves_the_old_file_and_no_temp_files(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "metrics.json", "old")
    with pytest.raises(RuntimeError, match="half way"), atomic_path(target) as tmp:
        tmp.write_text("half written")
        assert tmp.parent == tmp_path and tmp != target
        raise RuntimeError("half way")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_file_is_replaced_whole_and_readable_by_others(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "metrics.json", "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_a_directory_target_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "processed" / "shapes"
    with atomic_path(target, directory=True) as staging:
        (staging / "old.txt").write_text("old")
    with atomic_path(target, directory=True) as staging:
        assert list(staging.iterdir()) == []
        (staging / "sub").mkdir()
        (staging / "sub" / "new.txt").write_text("new")
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["sub", "sub/new.txt"]
    assert os.listdir(target.parent) == ["shapes"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755


def test_an_interrupted_directory_block_keeps_the_old_directory(tmp_path: Path) -> None:
    target = tmp_path / "raw"
    with atomic_path(target, directory=True) as staging:
        (staging / "a.txt").write_text("complete")
    with pytest.raises(KeyboardInterrupt), atomic_path(target, directory=True) as staging:
        (staging / "b.txt").write_text("partial")
        raise KeyboardInterrupt
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    assert os.listdir(tmp_path) == ["raw"]


def test_on_failure_the_parents_it_made_go_and_the_others_stay(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(OSError), atomic_path(tmp_path / "data" / "raw" / "cifar10", directory=True):
        raise OSError("download failed")
    assert os.listdir(tmp_path) == ["data"]
    assert os.listdir(tmp_path / "data") == []


def test_without_overwrite_a_target_that_appeared_first_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "entry"
    with atomic_path(target, directory=True, overwrite=False) as mine:
        (mine / "meta.json").write_text("mine")
        with atomic_path(target, directory=True, overwrite=False) as theirs:  # another writer, finishing first
            (theirs / "meta.json").write_text("theirs")
    assert (target / "meta.json").read_text() == "theirs"
    assert os.listdir(target.parent) == ["entry"]


def test_without_overwrite_a_missing_target_is_written(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "a.txt", overwrite=False) as tmp:
        tmp.write_text("first")
    assert (tmp_path / "a.txt").read_text() == "first"
