"""The per-dataset experiment recipes compose, build every piece they switch on, and train as given."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_classifier.model import create_model, model_kwargs
from image_classifier.optim import build_optimizer
from image_classifier.train import train
from image_classifier.training.finetune import build_ema, build_mixup
from tests.conftest import TINY_OVERRIDES, ComposeFn

EXPERIMENTS = {"animals_v2": 10, "cifar10": 10, "cats_vs_dogs": 2}


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_experiment_is_a_pretrained_gpu_fine_tuning_recipe(compose_config: ComposeFn, experiment: str) -> None:
    cfg = compose_config("train", [f"experiment={experiment}"])
    assert cfg.data.name == experiment and cfg.model.name == "convnextv2_atto" and cfg.model.pretrained
    assert cfg.trainer.device == "cuda" and cfg.trainer.precision == "bf16-mixed" and cfg.trainer.channels_last
    assert cfg.trainer.ema.enabled and cfg.trainer.linear_probe.enabled and cfg.trainer.early_stopping.patience
    assert cfg.logger.group == experiment

    classes = EXPERIMENTS[experiment]
    model = create_model(cfg.model.name, num_classes=classes, **model_kwargs(cfg.model))  # no download
    optimizer = build_optimizer(model, cfg.optimizer, cfg.data.batch_size)
    scales = {group["lr_scale"] for group in optimizer.param_groups}
    assert max(scales) == 1.0 and min(scales) < 0.2  # layer-wise decay reaches the stem
    assert build_mixup(cfg.trainer, classes, cfg.data.batch_size) is not None
    assert build_ema(cfg.trainer, model) is not None


@pytest.mark.slow
def test_animals_v2_recipe_trains_on_the_embedded_data_on_cpu(compose_config: ComposeFn, tiny_data_root: Path) -> None:
    overrides = [
        "experiment=animals_v2", "data=shapes", "trainer=default", "model.pretrained=false",
        *TINY_OVERRIDES, f"data.root={tiny_data_root}", "trainer.max_epochs=2",
    ]  # fmt: skip
    metrics = train(compose_config("train", overrides))
    assert {"val_ema/accuracy", "best/val_ema/accuracy", "test/accuracy"} <= metrics.keys()
