"""Every value check of a composed config, in one place: each bad value is one ``ConfigError`` line.

Types are checked earlier, by the schemas (:mod:`image_classifier.config.schema`) as Hydra composes;
here are the ranges, the choices, the names timm must know, the monitored metric and the file paths.
All of it runs before data preparation or model creation. The domain modules answer for their own names
(datasets, models, metrics, optimizers); they load torch and timm, so each check imports the one it asks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from image_classifier.errors import ConfigError
from image_classifier.precision import PRECISIONS

DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENT_DEVICES = ("auto", "cuda", "workers")
RE_MODES = ("pixel", "rand", "const")  # timm RandomErasing fills
MIXUP_MODES = ("batch", "pair", "elem")
LOGGERS = ("none", "wandb")
SPLITS = ("train", "val", "test")


def _value(cfg: DictConfig, key: str) -> Any:
    """The value at dotted ``key``; ``???`` when it is mandatory and not set."""
    try:
        return OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        return "???"


def _fail(key: str, value: Any, valid: str) -> ConfigError:
    return ConfigError(f"{key}={value}: {valid}")


def _at_least(cfg: DictConfig, minimum: float, *keys: str, optional: bool = False) -> None:
    for key in keys:
        value = _value(cfg, key)
        if value is None and optional:
            continue
        if value is None or value < minimum:
            raise _fail(key, value, f"must be at least {minimum}" + (" (or null)" if optional else "") + ".")


def _fraction(cfg: DictConfig, *keys: str, below_one: bool = False, optional: bool = False) -> None:
    """Each key in [0, 1], or [0, 1) with ``below_one``."""
    for key in keys:
        value = _value(cfg, key)
        if value is None and optional:
            continue
        if value is None or not (0 <= value < 1 if below_one else 0 <= value <= 1):
            raise _fail(key, value, f"must be in [0, 1{')' if below_one else ']'}.")


def _choice(cfg: DictConfig, key: str, choices: Iterable[str]) -> None:
    value, choices = _value(cfg, key), tuple(choices)
    if str(value) not in choices:
        raise _fail(key, value, f"must be one of {', '.join(choices)}.")


def _range_pair(cfg: DictConfig, key: str, low: float, high: float | None) -> None:
    pair = list(_value(cfg, key))
    upper = high if high is not None else float("inf")
    if len(pair) != 2 or not (low < pair[0] <= pair[1] <= upper):
        bound = f"<= {high}" if high is not None else ""
        raise _fail(key, pair, f"must be [min, max] with {low} < min <= max {bound}".rstrip() + ".")


def check_data(cfg: DictConfig) -> None:
    """``data.*``: the dataset's name, sizes, loader settings and augmentation."""
    from image_classifier.data.sources import KNOWN_DATASETS, is_known_dataset

    name, prepare = _value(cfg, "data.name"), _value(cfg, "data.prepare")
    if not is_known_dataset(str(name), prepare):
        known = ", ".join(KNOWN_DATASETS)
        raise _fail(
            "data.name", name, f"must be one of {known}, or a dataset imported with `invoke data NAME --source PATH`."
        )
    _at_least(cfg, 8, "data.image_size", "data.cache_max_side")
    _at_least(cfg, 8, "data.eval_image_size", optional=True)
    _at_least(cfg, 1, "data.batch_size")
    _at_least(cfg, 1, "data.prefetch_factor", optional=True)
    workers = _value(cfg, "data.num_workers")
    if workers != "auto" and not (isinstance(workers, int) and workers >= 0):
        raise _fail("data.num_workers", workers, "must be auto or a number of worker processes >= 0.")
    _choice(cfg, "data.augment_device", AUGMENT_DEVICES)
    crop = _value(cfg, "data.crop_pct")
    if crop is not None and not 0 < crop <= 1:
        raise _fail("data.crop_pct", crop, "must be in (0, 1] (or null for the model's own).")
    _range_pair(cfg, "data.augment.scale", 0, 1)
    _range_pair(cfg, "data.augment.ratio", 0, None)
    _fraction(cfg, "data.augment.hflip", "data.augment.vflip", "data.augment.re_prob")
    _choice(cfg, "data.augment.re_mode", RE_MODES)


def check_model(cfg: DictConfig) -> None:
    """``model.*``: a name timm (or the baseline) knows, dropout rates and the weight source."""
    from image_classifier.model import OFFLINE_WEIGHTS, check_model_name

    check_model_name(str(cfg.model.name))
    _fraction(cfg, "model.drop_rate", below_one=True)
    _fraction(cfg, "model.drop_path_rate", below_one=True, optional=True)
    weights = _value(cfg, "model.weights")
    if weights not in (None, OFFLINE_WEIGHTS) and not Path(str(weights)).expanduser().is_file():
        raise _fail("model.weights", weights, f"no such file (give a weights file, {OFFLINE_WEIGHTS}, or null).")


def check_optimization(cfg: DictConfig) -> None:
    """``optimizer.*`` and ``scheduler.*``: ranges, and settings timm's factories accept."""
    from image_classifier import optim

    lr = _value(cfg, "optimizer.lr")
    if lr is None or lr <= 0:
        raise _fail("optimizer.lr", lr, "must be positive.")
    _at_least(cfg, 0, "optimizer.weight_decay", "scheduler.min_lr", "scheduler.warmup_epochs")
    layer_decay = _value(cfg, "optimizer.layer_decay")
    if layer_decay is not None and not 0 < layer_decay <= 1:
        raise _fail("optimizer.layer_decay", layer_decay, "must be in (0, 1] (or null for none).")
    _choice(cfg, "optimizer.lr_scaling", optim.LR_SCALINGS)
    _at_least(cfg, 1, "optimizer.lr_base_batch_size")
    optim.check_optimization(cfg.optimizer, cfg.scheduler)


def monitorable_metrics(num_classes: int | None = None) -> list[str]:
    """The per-epoch metrics ``trainer.monitor`` can name (top-k only for more than k classes, when known)."""
    from image_classifier.metrics import headline_metric_names

    return ["train/loss", "train/accuracy", *(f"val/{name}" for name in headline_metric_names(num_classes))]


def check_monitor(cfg: DictConfig, num_classes: int | None = None) -> None:
    """``trainer.monitor`` must be a metric the run produces (checked again once the classes are known)."""
    names = monitorable_metrics(num_classes)
    if cfg.trainer.monitor not in names:
        raise _fail(
            "trainer.monitor", cfg.trainer.monitor, f"this run produces no such metric; one of {', '.join(names)}."
        )
    _choice(cfg, "trainer.monitor_mode", ("max", "min"))


def check_device(cfg: DictConfig) -> None:
    """``trainer.device`` and ``trainer.precision``."""
    _choice(cfg, "trainer.device", DEVICES)
    _choice(cfg, "trainer.precision", PRECISIONS)


def check_trainer(cfg: DictConfig) -> None:
    """``trainer.*``: the loop, its regularisers and the checkpoint to resume."""
    check_device(cfg)
    _at_least(cfg, 1, "trainer.max_epochs", "trainer.log_every_n_steps", "trainer.accumulate_grad_batches")
    _at_least(cfg, 1, "trainer.linear_probe.max_iter")
    _at_least(cfg, 0, "trainer.head_warmup_epochs", "trainer.linear_probe.weight_decay")
    _at_least(cfg, 0, "trainer.mixup.mixup_alpha", "trainer.mixup.cutmix_alpha", "trainer.early_stopping.min_delta")
    _at_least(cfg, 1, "trainer.early_stopping.patience", "trainer.checkpoint_every_n_steps", optional=True)
    _at_least(cfg, 8, "trainer.linear_probe.image_size", optional=True)
    _at_least(cfg, 0, "trainer.linear_probe.stop_margin", optional=True)
    clip = _value(cfg, "trainer.clip_grad_norm")
    if clip is not None and clip <= 0:
        raise _fail("trainer.clip_grad_norm", clip, "must be positive (or null for no clipping).")
    _fraction(cfg, "trainer.label_smoothing", "trainer.ema.decay", below_one=True)
    _fraction(cfg, "trainer.mixup.prob", "trainer.mixup.switch_prob")
    _choice(cfg, "trainer.mixup.mode", MIXUP_MODES)
    for key in ("trainer.dist_timeout_s", "trainer.dist_setup_timeout_s"):
        if _value(cfg, key) <= 0:
            raise _fail(key, _value(cfg, key), "must be positive.")
    resume = _value(cfg, "trainer.resume")
    if resume not in (None, "", "auto") and not Path(str(resume)).expanduser().exists():
        raise _fail("trainer.resume", resume, "no such checkpoint (give a last.pt, a run dir, auto or null).")
    check_monitor(cfg)


def check_logger(cfg: DictConfig) -> None:
    if cfg.get("logger") is not None:
        _choice(cfg, "logger.name", LOGGERS)


def check_train_config(cfg: DictConfig) -> None:
    """Every value check of a ``train`` config; raises the first problem as one ``ConfigError`` line."""
    check_data(cfg)
    check_model(cfg)
    check_optimization(cfg)
    check_trainer(cfg)
    check_logger(cfg)


def check_evaluate_config(cfg: DictConfig) -> None:
    """Every value check of an ``evaluate`` config (the bundle itself is checked when it is loaded)."""
    if OmegaConf.is_missing(cfg, "checkpoint") or not cfg.checkpoint:
        raise ConfigError("checkpoint is not set: pass checkpoint=PATH/TO/best.pt.")
    if not Path(str(cfg.checkpoint)).expanduser().is_file():
        raise _fail("checkpoint", cfg.checkpoint, "no such file (give a best.pt or last.pt bundle).")
    _choice(cfg, "split", SPLITS)
    check_data(cfg)
    check_device(cfg)
