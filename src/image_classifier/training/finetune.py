"""Fine-tuning pieces, each on or off by config, built from timm's utilities.

Head-only warm-up (freeze the backbone for the first epochs), Mixup/CutMix with a soft-target
loss, label smoothing, and an exponential moving average (EMA) of the weights.
"""

from __future__ import annotations

import logging
from typing import Any

from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.utils import ModelEmaV3
from torch import nn

from image_classifier.errors import ConfigError
from image_classifier.training.engine import batchnorm_layers

log = logging.getLogger(__name__)


def build_mixup(trainer_cfg: Any, num_classes: int, batch_size: int) -> Mixup | None:
    """timm's Mixup/CutMix when ``trainer.mixup`` enables either; it also smooths the labels."""
    cfg = trainer_cfg.get("mixup") or {}
    mixup_alpha, cutmix_alpha = float(cfg.get("mixup_alpha") or 0.0), float(cfg.get("cutmix_alpha") or 0.0)
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return None
    if batch_size % 2:
        raise ConfigError(f"Mixup/CutMix needs an even data.batch_size, got {batch_size}.")
    return Mixup(
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        prob=float(cfg.get("prob", 1.0)),
        switch_prob=float(cfg.get("switch_prob", 0.5)),
        mode=str(cfg.get("mode", "batch")),
        label_smoothing=float(trainer_cfg.label_smoothing),
        num_classes=num_classes,
    )


def build_loss(label_smoothing: float, mixup: Mixup | None) -> nn.Module:
    """Soft-target cross-entropy under Mixup (its targets are already smoothed), else smoothed CE."""
    return SoftTargetCrossEntropy() if mixup is not None else nn.CrossEntropyLoss(label_smoothing=label_smoothing)


def ema_enabled(trainer_cfg: Any) -> bool:
    """Whether ``trainer.ema.enabled``: the EMA weights are then the run's result."""
    return bool((trainer_cfg.get("ema") or {}).get("enabled"))


def build_ema(trainer_cfg: Any, model: nn.Module) -> ModelEmaV3 | None:
    """timm's ModelEmaV3 of ``model`` when ``trainer.ema.enabled``."""
    if not ema_enabled(trainer_cfg):
        return None
    cfg = trainer_cfg.get("ema")
    return ModelEmaV3(model, decay=float(cfg.get("decay", 0.9998)), use_warmup=bool(cfg.get("warmup", True)))


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Freeze (or unfreeze) every parameter but the classifier's: head-only warm-up."""
    head = {id(p) for p in model.get_classifier().parameters()}  # type: ignore[operator]
    for parameter in model.parameters():
        if id(parameter) not in head:
            parameter.requires_grad_(trainable)


def apply_head_warmup(model: nn.Module, epoch: int, head_warmup_epochs: int) -> None:
    """Train only the head for the first ``head_warmup_epochs`` epochs, then everything."""
    if head_warmup_epochs <= 0:
        return
    trainable = epoch >= head_warmup_epochs
    set_backbone_trainable(model, trainable)
    if epoch == 0 or epoch == head_warmup_epochs:
        log.info("epoch %d: %s", epoch, "training all layers" if trainable else "training the head only")


def freeze_batchnorm_statistics(model: nn.Module) -> int:
    """Keep every BatchNorm's running mean and variance at their pretrained values (momentum 0); returns the count.

    Training batches are still normalised by their own statistics; evaluation uses the pretrained ones,
    which small, low-resolution fine-tuning batches would otherwise drag away from what the weights expect.
    """
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.momentum = 0.0
    return len(layers)


def ema_metric_name(name: str) -> str:
    """The EMA weights' counterpart of a validation metric: ``val/accuracy`` -> ``val_ema/accuracy``."""
    return name.replace("val/", "val_ema/", 1) if name.startswith("val/") else name


def monitored_metric(trainer_cfg: Any) -> str:
    """The metric that picks ``best.pt``: ``trainer.monitor`` (``val/accuracy`` when unset), of the EMA weights
    when EMA is on (they are then monitored, kept and tested)."""
    name = str(trainer_cfg.get("monitor") or "val/accuracy")
    return ema_metric_name(name) if ema_enabled(trainer_cfg) else name
