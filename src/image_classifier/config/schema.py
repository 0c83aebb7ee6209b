"""Structured-config schemas: the type of every setting, checked by OmegaConf as Hydra composes the config.

Each group's schema is registered in Hydra's ConfigStore as ``schema/<group>/default`` and listed first
in ``configs/train.yaml`` (and ``evaluate.yaml``), so every YAML file and command-line override merged
on top is type-checked (``data.image_size=abc`` fails at composition). Value ranges, choices and
cross-field rules are checked in :mod:`image_classifier.config.checks`.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class AugmentConfig:
    """Training augmentation (timm ``create_transform`` settings)."""

    scale: list[float] = field(default_factory=lambda: [0.08, 1.0])
    ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333])
    hflip: float = 0.5
    vflip: float = 0.0
    color_jitter: Any = None  # a strength, or [brightness, contrast, saturation(, hue)]
    auto_augment: str | None = None
    re_prob: float = 0.0
    re_mode: str = "pixel"  # random erasing fill: pixel | rand | const


@dataclass
class DataConfig:
    """A dataset, its loaders and its augmentation."""

    name: str = MISSING
    root: str = MISSING
    image_size: int = MISSING
    eval_image_size: int | None = None
    batch_size: int = 32
    num_workers: int | str = "auto"
    prefetch_factor: int | None = 2
    pin_memory: bool = True
    cache: bool = True
    cache_max_side: int = 320
    cache_dir: str | None = None
    augment_device: str = "auto"
    crop_pct: float | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    generate: dict[str, Any] | None = None  # generated datasets: their generator's settings
    prepare: dict[str, Any] | None = None  # downloaded datasets: how the raw files are prepared


@dataclass
class ModelConfig:
    """A timm model (or ``baseline_cnn``) and where its initial weights come from."""

    name: str = MISSING
    pretrained: bool = False
    weights: str | None = None
    drop_rate: float = 0.0
    drop_path_rate: float | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """``timm.optim.create_optimizer_v2`` settings; ``kwargs`` go to the optimizer class itself."""

    opt: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5.0e-4
    layer_decay: float | None = None
    lr_scaling: str = "none"
    lr_base_batch_size: int = 32
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SchedulerConfig:
    """``timm.scheduler.create_scheduler_v2`` settings."""

    sched: str = "cosine"
    min_lr: float = 1.0e-5
    warmup_epochs: int = 0
    warmup_lr: float = 1.0e-5
    warmup_prefix: bool = False
    step_on_epochs: bool = False
    decay_epochs: float = 90
    decay_milestones: list[int] = field(default_factory=lambda: [90, 180, 270])
    decay_rate: float = 0.1
    cooldown_epochs: int = 0
    patience_epochs: int = 10


@dataclass
class LinearProbeConfig:
    enabled: bool = False
    weight_decay: float = 1.0e-4
    max_iter: int = 200
    image_size: int | None = None  # features at this size (null: data.eval_image_size, the evaluation's)
    stop_margin: float | None = None  # stop fine-tuning when an epoch validates this far below the probe


@dataclass
class EarlyStoppingConfig:
    patience: int | None = None
    min_delta: float = 0.0


@dataclass
class MixupConfig:
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    prob: float = 1.0
    switch_prob: float = 0.5
    mode: str = "batch"


@dataclass
class EmaConfig:
    enabled: bool = False
    decay: float = 0.9998
    warmup: bool = True


@dataclass
class TrainerConfig:
    """Device, precision and the training loop's settings."""

    device: str = "auto"
    precision: str = "32"
    max_epochs: int = 12
    seed: int = 42
    deterministic: bool = False
    resume: str | None = None
    compile: bool = False
    channels_last: bool = False
    clip_grad_norm: float | None = None
    label_smoothing: float = 0.0
    monitor: str = "val/accuracy"
    monitor_mode: str = "max"
    log_every_n_steps: int = 10
    accumulate_grad_batches: int = 1
    head_warmup_epochs: int = 0
    freeze_bn_stats: bool = False
    bn_eval: bool = False
    linear_probe: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    mixup: MixupConfig = field(default_factory=MixupConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    sync_batchnorm: bool = False
    dist_timeout_s: float = 600
    dist_setup_timeout_s: float = 60
    checkpoint_every_n_steps: int | None = None


@dataclass
class LoggerConfig:
    """Experiment tracking: ``none``, or Weights & Biases."""

    name: str = "none"
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    job_type: str | None = None
    tags: list[str] = field(default_factory=list)
    run_name: str | None = None
    log_model: bool = True


SCHEMAS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "scheduler": SchedulerConfig,
    "trainer": TrainerConfig,
    "logger": LoggerConfig,
}


def register_schemas() -> None:
    """Store every schema as ``schema/<group>/default`` in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    for group, node in SCHEMAS.items():
        store.store(group=f"schema/{group}", name="default", node=node)
