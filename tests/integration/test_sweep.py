"""Optuna sweep: maximises validation accuracy offline, one W&B group for all its trials."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from wandb.proto import wandb_internal_pb2 as pb

from image_classifier.config.entry import config_dir
from tests.conftest import REPO_ROOT, TINY_OVERRIDES
from tests.helpers.wandb_records import _chunks


def _run_group(run_dir: Path) -> str:
    (log_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    for raw in _chunks(log_file.read_bytes()):
        record = pb.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "run":
            return record.run.run_group
    raise AssertionError(f"no run record in {log_file}")


def test_optuna_search_config_maximises_val_accuracy_offline() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", ["hparams_search=optuna", "logger=wandb", "logger.group=s1"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert "OptunaSweeper" in sweeper._target_ and sweeper.direction == "maximize" and sweeper.storage is None
    assert cfg.optimized_metric == "val/accuracy" and str(cfg.hydra.mode).endswith("MULTIRUN")
    assert {"optimizer.lr", "optimizer.weight_decay"} <= set(sweeper.params)
    assert cfg.hydra.sweeper.study_name == "s1"


@pytest.mark.slow
def test_short_sweep_runs_offline_and_groups_its_trials(tmp_path: Path, tiny_data_root: Path) -> None:
    sweep = tmp_path / "sweep"
    command = [
        sys.executable, "-m", "image_classifier.train", "hparams_search=optuna", "hydra.sweeper.n_trials=2",
        *TINY_OVERRIDES, "logger=wandb", "logger.log_model=false", f"data.root={tiny_data_root}",
        "model.kwargs.width=8", f"hydra.sweep.dir={sweep}", "logger.group=optuna_tiny",
    ]  # fmt: skip
    env = {**os.environ, "PROJECT_ROOT": str(REPO_ROOT), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    accuracies = [yaml.safe_load((sweep / str(i) / "metrics.json").read_text())["val/accuracy"] for i in range(2)]
    assert results["best_value"] == pytest.approx(max(accuracies))
    assert {"optimizer.lr", "optimizer.weight_decay"} <= set(results["best_params"])
    groups = {_run_group(sweep / str(i)) for i in range(2)}
    assert groups == {"optuna_tiny"}


def test_a_multirun_keeps_its_config_and_every_trial_in_one_sweep_dir(tmp_path: Path, tiny_data_root: Path) -> None:
    """The default sweep dir is read once: the seconds that pass while the trials start do not split it."""
    command = [
        sys.executable, "-m", "image_classifier.train", "-m", "optimizer.lr=0.01,0.02", *TINY_OVERRIDES,
        f"data.root={tiny_data_root}", "model.kwargs.width=8", f"paths.log_dir={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "PROJECT_ROOT": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (sweep,) = (tmp_path / "train" / "multiruns").iterdir()
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    assert all((sweep / trial / "metrics.json").is_file() for trial in ("0", "1"))
