"""End to end on tiny shapes: train writes the run dir contract, evaluate reproduces it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig

from image_classifier.checkpoint import load_bundle
from image_classifier.data.shapes import SHAPE_CLASSES
from image_classifier.evaluate import evaluate
from image_classifier.train import train
from tests.conftest import REPO_ROOT, TINY_DATA_OVERRIDES, TINY_OVERRIDES, ComposeFn, compose
from tests.helpers.wandb_records import read_offline_run


def _train_cfg(compose_config: ComposeFn, data_root: Path, run_dir: Path, *extra: str) -> DictConfig:
    return compose_config("train", [*TINY_OVERRIDES, f"data.root={data_root}", *extra], output_dir=run_dir)


@pytest.fixture(scope="module")
def trained(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float]]:
    """One real 2-epoch training run with W&B offline."""
    run_dir = tmp_path_factory.mktemp("train_run")
    overrides = [*TINY_OVERRIDES, f"data.root={tiny_data_root}", "trainer.max_epochs=2", "logger=wandb"]
    cfg = compose("train", overrides, output_dir=run_dir)
    return run_dir, train(cfg)


def test_run_dir_holds_checkpoints_metrics_and_figures(trained: tuple[Path, dict[str, float]]) -> None:
    run_dir, metrics = trained
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "checkpoints" / "best.pt").is_file()
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    assert all(isinstance(v, float) for v in written.values())
    for key in ("train/loss", "val/accuracy", "test/accuracy", "test/f1_macro", "test/ece", "test/top5_accuracy"):
        assert 0.0 <= written[key] < 10.0, key
    assert (run_dir / "figures" / "confusion_matrix.png").stat().st_size > 10_000
    assert len(json.loads((run_dir / "history.json").read_text())) == 2


def test_best_bundle_is_self_describing(trained: tuple[Path, dict[str, float]]) -> None:
    run_dir, metrics = trained
    bundle = load_bundle(run_dir / "checkpoints" / "best.pt")
    assert bundle.model_name == "baseline_cnn"
    assert bundle.classes == sorted(SHAPE_CLASSES)
    assert bundle.input_size == (3, 32, 32)
    assert len(bundle.data_config["mean"]) == 3 and len(bundle.data_config["std"]) == 3
    assert bundle.config["data"]["name"] == "shapes" and bundle.config["trainer"]["max_epochs"] == 2
    assert bundle.lineage["git_commit"] and len(bundle.lineage["data_fingerprint"]) == 32
    assert bundle.metrics["test/accuracy"] == pytest.approx(metrics["test/accuracy"])
    assert bundle.versions["torch"] and bundle.versions["timm"]
    assert bundle.build_model()(torch.zeros(1, *bundle.input_size)).shape == (1, 10)


def test_wandb_offline_run_has_config_metrics_matrix_and_model(trained: tuple[Path, dict[str, float]]) -> None:
    run_dir, _ = trained
    run = read_offline_run(run_dir)
    assert {"model", "data", "trainer", "optimizer"} <= run.config_keys
    assert {"train/loss_step", "train/lr", "train/loss", "val/accuracy", "epoch"} <= run.history_keys
    assert any(key.startswith("test/confusion_matrix") for key in run.history_keys)
    assert ("baseline_cnn-shapes", "model") in run.artifacts


def test_evaluate_reproduces_the_test_accuracy(
    trained: tuple[Path, dict[str, float]], tiny_data_root: Path, compose_config: ComposeFn, tmp_path: Path
) -> None:
    run_dir, metrics = trained
    cfg = compose_config(
        "evaluate",
        [f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}", f"data.root={tiny_data_root}", *TINY_DATA_OVERRIDES],
        output_dir=tmp_path / "eval",
    )
    result = evaluate(cfg)
    assert result["accuracy"] == pytest.approx(metrics["test/accuracy"])
    assert result["f1_macro"] == pytest.approx(metrics["test/f1_macro"])
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {"accuracy", "f1_macro", "ece", "top5_accuracy", "precision/circle", "recall/star", "f1/ring"} <= set(
        written
    )
    assert (tmp_path / "eval" / "figures" / "confusion_matrix.png").is_file()
    assert len((tmp_path / "eval" / "predictions.csv").read_text().splitlines()) == 1 + 40


def test_same_seed_deterministic_runs_give_identical_metrics(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path
) -> None:
    runs = [
        train(
            _train_cfg(compose_config, tiny_data_root, tmp_path / name, "trainer.deterministic=true", "trainer.seed=3")
        )
        for name in ("a", "b")
    ]
    assert runs[0] == runs[1]


def test_bf16_mixed_precision_trains_on_cpu(compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path) -> None:
    metrics = train(_train_cfg(compose_config, tiny_data_root, tmp_path / "bf16", "trainer.precision=bf16-mixed"))
    assert metrics["test/loss"] == metrics["test/loss"]  # not NaN
    assert load_bundle(tmp_path / "bf16" / "checkpoints" / "best.pt").state_dict["head.3.weight"].dtype == torch.float32


def _cli(module: str, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.name=convnextv2_attto"], "error: Unknown model 'convnextv2_attto'. Did you mean: convnextv2_atto"),
        (["optimizer.lr=-0.1"], "error: optimizer.lr=-0.1: must be positive."),
        (["data.image_size=abc"], "error: data.image_size=abc: Value 'abc' of type 'str' could not be converted"),
        (["trainer.monitor=val/acc"], "error: trainer.monitor=val/acc: this run produces no such metric"),
        (["trainer.device=cuda"] if not torch.cuda.is_available() else ["trainer.precision=64"], "error: trainer."),
    ],
)
def test_bad_train_config_fails_with_one_line_before_any_work(args: list[str], message: str, tmp_path: Path) -> None:
    result = _cli(
        "image_classifier.train", f"hydra.run.dir={tmp_path}", f"data.root={tmp_path / 'data'}", "logger=none", *args
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists() and not (tmp_path / "checkpoints").exists()


def test_unknown_data_group_lists_the_options_in_one_line(tmp_path: Path) -> None:
    result = _cli("image_classifier.train", f"hydra.run.dir={tmp_path}", "data=imagenet")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: In 'train': Could not find 'data/imagenet'")
    assert "shapes" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_missing_checkpoint_fails_with_one_line(tmp_path: Path) -> None:
    result = _cli("image_classifier.evaluate", f"hydra.run.dir={tmp_path}", f"checkpoint={tmp_path / 'nope.pt'}")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: checkpoint={tmp_path / 'nope.pt'}: no such file (give a best.pt or last.pt bundle)."
    )


def test_bundle_with_other_classes_is_refused(trained: tuple[Path, dict[str, float]], tmp_path: Path) -> None:
    other = tmp_path / "data" / "processed" / "cats_vs_dogs"
    for split in ("train", "val", "test"):
        (other / split / "only").mkdir(parents=True)
    (other / "classes.json").write_text('["only"]')
    (other / "summary.json").write_text('{"classes": ["only"], "counts": {}, "skipped": [], "source": {}}')
    (other / "manifest.csv").write_text("split,class,path\n")
    run_dir, _ = trained
    result = _cli(
        "image_classifier.evaluate",
        f"hydra.run.dir={tmp_path / 'eval'}",
        f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}",
        "data=cats_vs_dogs",
        f"data.root={tmp_path / 'data'}",
    )
    assert result.returncode == 2
    assert "do not match" in result.stderr


@pytest.mark.parametrize("model", ["convnextv2_atto", "timm"])
def test_timm_model_configs_train(model: str, compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path) -> None:
    metrics = train(_train_cfg(compose_config, tiny_data_root, tmp_path / model, f"model={model}"))
    bundle = load_bundle(tmp_path / model / "checkpoints" / "best.pt")
    assert bundle.model_name == ("convnextv2_atto" if model == "convnextv2_atto" else "resnet18")
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
