"""Optimizer and learning-rate schedule from the config, through timm's factories (training and benchmarks)."""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import OmegaConf
from timm.optim import create_optimizer_v2, list_optimizers
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler
from torch import nn

from image_classifier.errors import ConfigError

log = logging.getLogger(__name__)

LR_SCALINGS = ("none", "linear", "sqrt")
# the names timm.scheduler.create_scheduler_v2 knows (it has no registry to list them)
SCHEDULERS = ("cosine", "tanh", "step", "multistep", "plateau", "poly", "wsd", "rsqrt", "constant")


def _plain(cfg: Any) -> dict[str, Any]:
    return dict(OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg)  # type: ignore[arg-type]


def scaled_lr(lr: float, global_batch_size: int, base_batch_size: int, rule: str) -> float:
    """``lr`` given for ``base_batch_size``, scaled to ``global_batch_size`` by ``rule`` (none, linear or sqrt)."""
    if rule not in LR_SCALINGS:
        raise ConfigError(f"optimizer.lr_scaling={rule} is not one of {', '.join(LR_SCALINGS)}.")
    if base_batch_size < 1:
        raise ConfigError(f"optimizer.lr_base_batch_size must be at least 1, got {base_batch_size}.")
    ratio = global_batch_size / base_batch_size
    return lr * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


def optimizer_kwargs(optimizer_cfg: Any, global_batch_size: int) -> dict[str, Any]:
    """Keyword arguments for ``create_optimizer_v2``: the lr scaled to the global batch, ``kwargs`` flattened in."""
    kwargs = _plain(optimizer_cfg)
    rule = str(kwargs.pop("lr_scaling", "none"))
    base = int(kwargs.pop("lr_base_batch_size", global_batch_size))
    kwargs |= kwargs.pop("kwargs", None) or {}
    kwargs["lr"] = scaled_lr(float(kwargs["lr"]), global_batch_size, base, rule)
    if rule != "none":
        log.info("Learning rate %.4g (%s scaling from batch %d to global batch %d)", kwargs["lr"], rule, base,
                 global_batch_size)  # fmt: skip
    return kwargs


def build_optimizer(model: nn.Module, optimizer_cfg: Any, global_batch_size: int) -> torch.optim.Optimizer:
    """The configured timm optimizer over ``model``'s parameters (with layer-wise decay when set)."""
    return create_optimizer_v2(model, **optimizer_kwargs(optimizer_cfg, global_batch_size))


def build_scheduler(
    optimizer: torch.optim.Optimizer, scheduler_cfg: Any, num_epochs: int, updates_per_epoch: int
) -> Scheduler:
    """The configured timm schedule, stepped per optimizer update unless ``step_on_epochs``."""
    scheduler, _ = create_scheduler_v2(
        optimizer, **_plain(scheduler_cfg), num_epochs=num_epochs, updates_per_epoch=updates_per_epoch
    )
    return scheduler


def check_optimization(optimizer_cfg: Mapping[str, Any], scheduler_cfg: Mapping[str, Any]) -> None:
    """Fail in one line on an optimizer or schedule timm does not know or will not build, before any work."""
    name, known = str(optimizer_cfg["opt"]).lower(), [str(n) for n in list_optimizers()]
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.optim.list_optimizers()"
        raise ConfigError(f"optimizer.opt={optimizer_cfg['opt']}: timm has no such optimizer; {hint}")
    sched = str(scheduler_cfg["sched"])
    if sched not in SCHEDULERS:
        raise ConfigError(f"scheduler.sched={sched}: timm has no such schedule; one of {', '.join(SCHEDULERS)}.")
    probe = nn.Linear(1, 1)  # a throwaway model: does timm accept these settings together?
    settings = {k: v for k, v in optimizer_kwargs(optimizer_cfg, 1).items() if k != "layer_decay"}
    try:
        optimizer = create_optimizer_v2(probe, **settings)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"optimizer: timm will not build {settings}: {error}") from None
    try:
        build_scheduler(optimizer, scheduler_cfg, num_epochs=2, updates_per_epoch=1)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"scheduler: timm will not build {_plain(scheduler_cfg)}: {error}") from None
