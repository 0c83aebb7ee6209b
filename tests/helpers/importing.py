"""Running ``python -m image_classifier.data`` in-process against a throwaway project and data root."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from image_classifier.data.__main__ import main
from tests.conftest import REPO_ROOT


@dataclass
class Project:
    """A project folder (its ``configs/``, ``reports/``) and a data root, as a user's checkout has them."""

    root: Path
    data: Path

    def config(self, name: str) -> Path:
        return self.root / "configs" / "data" / f"{name}.yaml"

    def prepared(self, name: str) -> Path:
        return self.data / "processed" / name

    def summary(self, name: str) -> dict:
        return json.loads((self.prepared(name) / "summary.json").read_text())

    def quality(self, name: str) -> dict:
        return json.loads((self.prepared(name) / "quality.json").read_text())

    def manifest(self, name: str) -> list[dict[str, str]]:
        with open(self.prepared(name) / "manifest.csv", newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))


def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "configs", root / "configs")
    monkeypatch.setenv("PROJECT_ROOT", str(root))
    return Project(root=root, data=tmp_path / "data")


def run_data(project: Project, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command with ``--root`` the project's data root; its exit status, stdout and stderr."""
    try:
        code = main([*argv, "--root", str(project.data)])
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
