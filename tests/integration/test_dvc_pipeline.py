"""The DVC pipeline on the embedded dataset, end to end and offline, in a fresh git repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import compose_and_dump

from tests.conftest import REPO_ROOT
from tests.helpers.dvc_project import copy_project

TINY = {
    "data": {
        "image_size": 32,
        "num_workers": 0,
        "generate": {"train_per_class": 10, "val_per_class": 3, "test_per_class": 3},
    },
    "trainer": {"max_epochs": 1, "device": "cpu"},
}


def run(repo: Path, *args: str) -> str:
    result = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's pipeline files in a new git repo, the pipeline config made tiny."""
    repo = copy_project(tmp_path_factory.mktemp("project") / "image-classifier")
    pipeline = repo / "configs" / "pipeline.yaml"
    pipeline.write_text(pipeline.read_text() + "\n" + yaml.safe_dump(TINY))
    compose_and_dump(repo / "params.yaml", str(repo / "configs"), None, "pipeline", str(repo), [])
    run(repo, "git", "init", "-q")
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "project")
    run(repo, "dvc", "remote", "modify", "--local", "local", "url", str(repo.parent / "storage"))
    return repo


def test_params_yaml_is_the_composed_pipeline_config(tmp_path: Path) -> None:
    """``dvc repro`` reads params.yaml: it must be configs/pipeline.yaml as composed now (``invoke params``)."""
    compose_and_dump(tmp_path / "params.yaml", str(REPO_ROOT / "configs"), None, "pipeline", str(REPO_ROOT), [])
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert committed == yaml.safe_load((tmp_path / "params.yaml").read_text()), (
        "params.yaml is stale: run `invoke params`"
    )


@pytest.mark.slow
def test_repro_runs_end_to_end_then_is_up_to_date(repo: Path) -> None:
    first = run(repo, "dvc", "repro")
    for stage in ("prepare", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first

    summary = json.loads((repo / "data" / "processed" / "shapes" / "summary.json").read_text())
    assert summary["total"] == 160
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert (repo / "reports" / "figures" / "confusion_matrix.png").stat().st_size > 0
    history = json.loads((repo / "outputs" / "pipeline" / "train" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [0]

    assert "Data and pipelines are up to date" in run(repo, "dvc", "repro")
    assert "up to date" in run(repo, "dvc", "status")

    shown = json.loads(run(repo, "dvc", "metrics", "show", "--json"))
    assert "accuracy" in json.dumps(shown)
    plots = json.loads(run(repo, "dvc", "plots", "show", "--json"))["data"]
    assert {"loss", "accuracy", "reports/figures/confusion_matrix.png"} <= set(plots)

    run(repo, "dvc", "push")
    assert any((repo.parent / "storage").rglob("*"))


@pytest.mark.slow
def test_exp_run_recomposes_params_with_overrides(repo: Path) -> None:
    run(repo, "dvc", "exp", "run", "-S", "model=timm", "-S", "model.name=resnet18")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["model"]["name"] == "resnet18" and params["data"]["generate"]["train_per_class"] == 10
    config = yaml.safe_load((repo / "outputs" / "pipeline" / "train" / ".hydra" / "config.yaml").read_text())
    assert config["model"]["name"] == "resnet18"
    assert "resnet18" in run(repo, "dvc", "exp", "show", "--json")
