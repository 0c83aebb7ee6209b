"""A copy of the project's pipeline files (configs, sources, dvc.yaml and DVC's settings) for a test's new repo."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO_ROOT

PROJECT_FILES = (
    "configs",
    "src",
    "dvc.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/.gitignore",
    "data/.gitignore",
)


def copy_project(repo: Path) -> Path:
    """Copy :data:`PROJECT_FILES` into ``repo``, with an empty ``data/raw``; ``repo``."""
    for name in PROJECT_FILES:
        source, target = REPO_ROOT / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    (repo / "data" / "raw").mkdir()
    (repo / "data" / "raw" / ".gitkeep").touch()
    return repo
