"""An imported dataset under DVC: the prepare stage re-makes the import from raw/NAME, and a re-import of a
changed source shows in ``dvc status`` and in the data fingerprint."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dvc.utils.hydra import compose_and_dump

from tests.helpers.dvc_project import copy_project
from tests.helpers.photos import photo_folders


def run(repo: Path, *args: str) -> str:
    environment = {**os.environ, "PROJECT_ROOT": str(repo), "PYTHONPATH": str(repo / "src")}
    result = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=600, env=environment)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def new_repo(base: Path) -> Path:
    repo = copy_project(base / "project")
    run(repo, "git", "init", "-q")
    return repo


def commit(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", message)


def fingerprint(repo: Path) -> str:
    return hashlib.md5((repo / "data" / "processed" / "pets" / "manifest.csv").read_bytes()).hexdigest()


@pytest.mark.slow
def test_dvc_tracks_the_import_and_sees_a_changed_source(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    photos = photo_folders(tmp_path / "photos", {"a": 8, "b": 8}, size=(32, 32))
    imported = run(repo, sys.executable, "-m", "image_classifier.data", "pets", "--source", str(photos))
    assert "dvc add data/raw/pets" in imported
    first = fingerprint(repo)
    compose_and_dump(repo / "params.yaml", str(repo / "configs"), None, "pipeline", str(repo), ["data=pets"])
    run(repo, "dvc", "add", "data/raw/pets")
    assert "Running stage 'prepare'" in run(repo, "dvc", "repro", "prepare")
    assert fingerprint(repo) == first, "the pipeline's prepare stage re-makes the same dataset from raw/pets"
    commit(repo, "pets")
    assert "up to date" in run(repo, "dvc", "status", "--with-deps", "prepare")

    photo_folders(photos, {"c": 8}, seed=5, size=(32, 32))
    run(repo, sys.executable, "-m", "image_classifier.data", "pets", "--source", str(photos), "--force")
    status = run(repo, "dvc", "status", "prepare", "data/raw/pets.dvc")
    assert "modified:           data/raw" in status and "modified:           data/processed/pets" in status, status
    assert "data/raw/pets.dvc:" in status, status
    assert fingerprint(repo) != first
