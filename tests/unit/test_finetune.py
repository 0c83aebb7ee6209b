"""Fine-tuning pieces: Mixup, head warm-up, EMA, gradient accumulation, layer decay, early stopping, RNG state."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from image_classifier.errors import ConfigError
from image_classifier.model import create_model
from image_classifier.training.engine import train_one_epoch
from image_classifier.training.finetune import apply_head_warmup, build_ema, build_loss, build_mixup, ema_metric_name
from image_classifier.training.monitor import EarlyStopping, Monitor
from image_classifier.training.resume import capture_rng, restore_rng


def _trainer_cfg(**overrides: object) -> object:
    base = {
        "label_smoothing": 0.1,
        "mixup": {"mixup_alpha": 0.0, "cutmix_alpha": 0.0, "prob": 1.0, "switch_prob": 0.5, "mode": "batch"},
        "ema": {"enabled": False, "decay": 0.9, "warmup": False},
    }
    return OmegaConf.merge(base, overrides)


def test_mixup_is_off_by_default_and_mixes_labels_when_on() -> None:
    assert build_mixup(_trainer_cfg(), num_classes=4, batch_size=8) is None
    assert isinstance(build_loss(0.1, None), nn.CrossEntropyLoss)
    mixup = build_mixup(_trainer_cfg(mixup={"mixup_alpha": 0.8, "cutmix_alpha": 1.0}), num_classes=4, batch_size=8)
    assert mixup is not None and isinstance(build_loss(0.1, mixup), SoftTargetCrossEntropy)
    images, soft = mixup(torch.rand(8, 3, 16, 16), torch.arange(8) % 4)
    assert images.shape == (8, 3, 16, 16) and soft.shape == (8, 4)
    assert torch.allclose(soft.sum(dim=1), torch.ones(8))
    assert (soft > 0).sum(dim=1).min() >= 2  # every target is a mix (and smoothed)


def test_mixup_rejects_an_odd_batch() -> None:
    with pytest.raises(ConfigError, match=r"even data\.batch_size"):
        build_mixup(_trainer_cfg(mixup={"cutmix_alpha": 1.0}), num_classes=4, batch_size=7)


def test_head_warmup_trains_only_the_classifier_then_everything() -> None:
    model = create_model("baseline_cnn", num_classes=3, width=4)
    head = {id(p) for p in model.get_classifier().parameters()}
    apply_head_warmup(model, epoch=0, head_warmup_epochs=2)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == head
    apply_head_warmup(model, epoch=2, head_warmup_epochs=2)
    assert all(p.requires_grad for p in model.parameters())


def test_layer_decay_gives_earlier_layers_smaller_learning_rates() -> None:
    model = create_model("test_convnext", num_classes=3)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    scales = sorted({group["lr_scale"] for group in optimizer.param_groups})
    assert len(scales) >= 3 and scales[-1] == 1.0 and scales[0] < 0.2


def _loader(batch_size: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 6, generator=generator), torch.randint(0, 3, (32,), generator=generator))
    return DataLoader(data, batch_size=batch_size, shuffle=False)


def _one_epoch(batch_size: int, accumulate: int, ema: bool = False) -> tuple[nn.Module, int, object]:
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    loader = _loader(batch_size)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched="cosine", num_epochs=1, updates_per_epoch=len(loader) // accumulate
    )
    model_ema = build_ema(_trainer_cfg(ema={"enabled": ema, "decay": 0.5, "warmup": False}), model)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    _, step = train_one_epoch(
        model, loader, nn.CrossEntropyLoss(), optimizer, scheduler, scaler,
        device=torch.device("cpu"), precision="32", epoch=0, step=0, accumulate=accumulate, ema=model_ema,
    )  # fmt: skip
    return model, step, model_ema


def test_gradient_accumulation_equals_the_larger_batch() -> None:
    big, big_steps, _ = _one_epoch(batch_size=16, accumulate=1)
    accumulated, steps, _ = _one_epoch(batch_size=8, accumulate=2)
    assert steps == big_steps == 2
    for a, b in zip(big.parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_ema_follows_the_trained_weights() -> None:
    model, _, ema = _one_epoch(batch_size=8, accumulate=1, ema=True)
    torch.manual_seed(0)
    initial = nn.Linear(6, 3)
    assert ema is not None
    ema_weight, weight, start = ema.module.weight, model.weight, initial.weight
    assert not torch.equal(ema_weight, weight) and not torch.equal(ema_weight, start)
    assert (ema_weight - weight).norm() < (start - weight).norm()


def test_ema_metric_name() -> None:
    assert ema_metric_name("val/accuracy") == "val_ema/accuracy"
    assert ema_metric_name("train/loss") == "train/loss"


def _observe(stopper: EarlyStopping, values: tuple[float, ...]) -> list[bool]:
    stops = []
    for epoch, value in enumerate(values):
        stops.append(stopper.observe(value))
        stopper.monitor.update(value, epoch)
    return stops


def test_early_stopping_waits_patience_epochs_without_improvement() -> None:
    stopper = EarlyStopping(Monitor("val/accuracy", "max"), patience=2, min_delta=0.01)
    assert _observe(stopper, (0.5, 0.6, 0.605, 0.59)) == [False, False, False, True]
    assert stopper.monitor.best == 0.605 and stopper.monitor.best_epoch == 2  # best.pt: any gain counts
    restored = EarlyStopping(Monitor("val/accuracy", "max"), patience=2)
    restored.load_state_dict(stopper.state_dict())
    restored.monitor.load_state_dict(stopper.monitor.state_dict())
    assert restored.stopped and restored.monitor.best == 0.605
    assert not any(_observe(EarlyStopping(Monitor("val/loss", "min")), (1.0, 2.0, 3.0)))


def test_the_monitor_compares_in_its_mode_and_never_prefers_nan() -> None:
    lower = Monitor("val/loss", "min")
    assert [lower.update(v, e) for e, v in enumerate((1.0, 0.5, 0.7, float("nan"), 0.4))] == [
        True, True, False, False, True,
    ]  # fmt: skip
    assert (lower.best, lower.best_epoch) == (0.4, 4)
    assert not Monitor("val/accuracy", "max", best=0.9).is_better(0.95, min_delta=0.1)


def test_rng_state_round_trips_through_a_weights_only_checkpoint() -> None:
    loader = DataLoader(list(range(20)), batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3))
    list(loader)
    buffer = io.BytesIO()
    torch.save({"rng": capture_rng(loader.generator)}, buffer)

    def draws() -> tuple[float, float, float, list[list[int]]]:
        return random.random(), float(np.random.rand()), float(torch.rand(1)), [b.tolist() for b in loader]

    expected = draws()
    draws()  # move every generator on
    buffer.seek(0)
    restore_rng(torch.load(buffer, weights_only=True)["rng"], loader.generator)
    assert draws() == expected


def test_a_fine_tune_that_falls_below_the_probe_by_more_than_the_margin_stops() -> None:
    stopper = EarlyStopping(Monitor("val/accuracy", "max"), reference=0.90, margin=0.03)
    assert _observe(stopper, (0.88, 0.89)) == [False, False]  # within the margin: fine-tuning goes on
    stopper = EarlyStopping(Monitor("val/accuracy", "max"), reference=0.90, margin=0.03)
    assert _observe(stopper, (0.86,)) == [True] and "below the linear probe's 0.9000" in stopper.reason
    restored = EarlyStopping(Monitor("val/accuracy", "max"), margin=0.03)
    restored.load_state_dict(stopper.state_dict())  # a resumed run stops too, and still knows the probe's value
    assert restored.stopped and restored.reference == 0.90
    lower = EarlyStopping(Monitor("val/loss", "min"), reference=0.5, margin=0.1)
    assert _observe(lower, (0.55, 0.65)) == [False, True]
    assert not any(_observe(EarlyStopping(Monitor("val/accuracy", "max"), reference=0.9), (0.1, 0.2)))  # no margin


def test_batchnorm_in_eval_mode_keeps_and_uses_the_running_statistics() -> None:
    """With ``bn_eval`` a training batch is normalised by the running statistics, which stay as they were;
    the affine weights and the other layers still learn."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Linear(6, 3))
    batchnorm = model[1]
    batchnorm.running_mean.fill_(0.5)
    batchnorm.running_var.fill_(2.0)
    data = TensorDataset(torch.randn(16, 6) * 3 + 1, torch.randint(0, 3, (16,)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = create_scheduler_v2(optimizer, sched="cosine", num_epochs=1, updates_per_epoch=2)[0]
    weight = batchnorm.weight.detach().clone()
    for bn_eval in (True, False):
        train_one_epoch(
            model, DataLoader(data, batch_size=8), nn.CrossEntropyLoss(), optimizer, scheduler,
            torch.amp.GradScaler("cpu", enabled=False), device=torch.device("cpu"), precision="32", epoch=0, step=0,
            bn_eval=bn_eval,
        )  # fmt: skip
        if bn_eval:
            assert not batchnorm.training
            assert torch.equal(batchnorm.running_mean, torch.full((6,), 0.5))
            assert torch.equal(batchnorm.running_var, torch.full((6,), 2.0))
            assert not torch.equal(batchnorm.weight, weight)  # the affine weights trained
    assert not torch.equal(batchnorm.running_mean, torch.full((6,), 0.5))  # in train mode the statistics move
