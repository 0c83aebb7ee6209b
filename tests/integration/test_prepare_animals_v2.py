"""Animals-V2: import the Kaggle folder as distributed; the source's own splits and class folders are kept."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from image_classifier.data.__main__ import main

CLASSES = ["Cat", "Cow", "Dog", "Elephant", "Gorilla", "Hippo", "Monkey", "Panda", "Tiger", "Zebra"]
SPLIT_FOLDERS = {
    "train": "Training Data/Training Data",
    "val": "Validation Data/Validation Data",
    "test": "Testing Data/Testing Data",
}


@pytest.fixture(scope="module")
def source(shared_data: Path) -> Path:
    return shared_data / "animals-v2"


@pytest.fixture(scope="module")
def prepared(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("animals")
    assert main(["animals_v2", "--source", str(source), "--root", str(root)]) == 0
    return root / "processed" / "animals_v2"


def test_counts_per_split_and_class_match_the_source(source: Path, prepared: Path) -> None:
    summary = json.loads((prepared / "summary.json").read_text())
    assert summary["classes"] == CLASSES == json.loads((prepared / "classes.json").read_text())
    expected = {
        split: {label: len(list((source / folder / label).iterdir())) for label in CLASSES}
        for split, folder in SPLIT_FOLDERS.items()
    }
    assert summary["counts"] == expected
    assert expected["train"]["Cat"] == 100 and expected["val"]["Zebra"] == 20
    assert summary["skipped"] == [] and summary["total"] == 1400


def test_labels_and_files_come_from_the_source_unchanged(source: Path, prepared: Path) -> None:
    for split, folder in SPLIT_FOLDERS.items():
        for label in ("Cat", "Gorilla"):
            originals = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (source / folder / label).iterdir()}
            copies = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (prepared / split / label).iterdir()}
            assert copies == originals


def test_an_interrupted_prepare_leaves_nothing_that_looks_complete(source: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "image_classifier.data", "animals_v2", "--source", str(source), "--root", str(root)],
        stderr=subprocess.PIPE,
        text=True,
    )
    processed = root / "processed"
    while process.poll() is None and not list(processed.glob(".animals_v2.*.partial/train/*/*")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=60)
    assert process.returncode == 130, error
    assert "interrupted: nothing was kept" in error
    assert not processed.exists(), "the folder made for it is removed with what was half written"
    assert not any(name.startswith(".") for name in os.listdir(root / "raw"))
