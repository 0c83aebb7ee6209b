"""Kaggle datasets without credentials: one line naming both ways to get the data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(("name", "page"), [("animals_v2", "kaggle.com/datasets/"), ("cats_vs_dogs", "dogs-vs-cats")])
def test_without_credentials_the_error_names_credentials_and_source(name: str, page: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAGGLE_")}
    result = subprocess.run(
        [sys.executable, "-m", "image_classifier.data", name, "--root", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "KAGGLE_USERNAME and KAGGLE_KEY" in result.stderr
    assert "--source PATH" in result.stderr and page in result.stderr
    assert not (tmp_path / "data" / "processed").exists()
    assert not (tmp_path / "data" / "raw").exists()
