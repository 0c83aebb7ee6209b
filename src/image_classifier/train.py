"""Hydra entry point: ``python -m image_classifier.train [overrides]``; ``train(cfg)`` returns metrics."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn

from image_classifier.checkpoint import Bundle, git_commit, library_versions, save_bundle
from image_classifier.data.loaders import KNOWN_DATASETS, build_dataloaders, open_dataset
from image_classifier.distributed import (
    broadcast_object,
    init_distributed,
    is_main,
    local_main_first,
    mean_over_ranks,
    optimizer_kwargs,
    rank_device,
    set_epoch,
    wrap_model,
)
from image_classifier.engine import PRECISIONS, StepState, predict, train_one_epoch
from image_classifier.errors import ConfigError
from image_classifier.metrics import classification_metrics, confusion_matrix
from image_classifier.model import check_model_name, create_model, model_data_config
from image_classifier.plots import plot_confusion_matrix
from image_classifier.reporting import print_metrics_table, write_metrics
from image_classifier.runtime import config_dir, project_root, report_user_errors, seed_everything, select_device
from image_classifier.tracking import create_tracker

log = logging.getLogger(__name__)


def validate_config(cfg: DictConfig) -> None:
    """Fail before any work on values that cannot run."""
    check_model_name(cfg.model.name)
    if cfg.data.name not in KNOWN_DATASETS:
        raise ConfigError(f"Unknown dataset '{cfg.data.name}'. Known: {', '.join(KNOWN_DATASETS)}.")
    if not cfg.optimizer.lr > 0:
        raise ConfigError(f"optimizer.lr must be positive, got {cfg.optimizer.lr}.")
    if cfg.trainer.max_epochs < 1:
        raise ConfigError(f"trainer.max_epochs must be at least 1, got {cfg.trainer.max_epochs}.")
    if str(cfg.trainer.precision) not in PRECISIONS:
        raise ConfigError(f"trainer.precision={cfg.trainer.precision} is not one of {', '.join(PRECISIONS)}.")
    if cfg.data.batch_size < 1 or cfg.data.image_size < 8:
        raise ConfigError("data.batch_size must be >= 1 and data.image_size >= 8.")
    if cfg.trainer.monitor_mode not in ("max", "min"):
        raise ConfigError(f"trainer.monitor_mode must be max or min, got {cfg.trainer.monitor_mode}.")


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The keyword arguments that rebuild the architecture (no weight sources)."""
    kwargs = OmegaConf.to_container(cfg.model.get("kwargs") or {}, resolve=True)
    assert isinstance(kwargs, dict)
    kwargs["drop_rate"] = cfg.model.drop_rate
    if cfg.model.get("drop_path_rate") is not None:
        kwargs["drop_path_rate"] = cfg.model.drop_path_rate
    return kwargs


def is_better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, validate every epoch, checkpoint, then test the best weights. Returns flat metrics."""
    validate_config(cfg)
    seed_everything(cfg.trainer.seed, cfg.trainer.deterministic)
    init_distributed(cfg.trainer.get("dist_timeout_s", 600))
    device = rank_device(select_device(cfg.trainer.device))
    precision = str(cfg.trainer.precision)
    run_dir = Path(cfg.paths.output_dir)
    checkpoints = run_dir / "checkpoints"
    log.info("Training %s on %s (%s, precision %s) in %s", cfg.model.name, cfg.data.name, device, precision, run_dir)

    kwargs = model_kwargs(cfg)
    with local_main_first():
        classes = open_dataset(cfg.data).classes
    model = create_model(
        cfg.model.name, num_classes=len(classes), pretrained=cfg.model.pretrained, weights=cfg.model.weights, **kwargs
    )
    data_config = model_data_config(model, cfg.data.image_size, cfg.data.get("crop_pct"))
    data = build_dataloaders(cfg.data, data_config, seed=cfg.trainer.seed)
    model.to(device, memory_format=torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format)
    train_model = wrap_model(model, device, sync_batchnorm=cfg.trainer.get("sync_batchnorm", False))
    train_model = torch.compile(train_model) if cfg.trainer.compile else train_model  # type: ignore[assignment]

    optimizer = create_optimizer_v2(model, **optimizer_kwargs(cfg.optimizer, cfg.data.batch_size))
    scheduler, _ = create_scheduler_v2(
        optimizer,
        **OmegaConf.to_container(cfg.scheduler, resolve=True),  # type: ignore[arg-type]
        num_epochs=cfg.trainer.max_epochs,
        updates_per_epoch=len(data.loaders["train"]),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.trainer.label_smoothing)
    resolved_config = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved_config, dict)
    tracker = create_tracker(cfg.get("logger") if is_main() else None, run_dir, resolved_config)
    lineage = {"git_commit": git_commit(project_root()), "data_fingerprint": data.dataset.fingerprint, "run_dir": str(run_dir)}
    if tracker.run_id:
        lineage["wandb_run_id"] = tracker.run_id

    def bundle(metrics: dict[str, float], epoch: int) -> Bundle:
        return Bundle(
            state_dict=model.state_dict(),
            model_name=cfg.model.name,
            model_kwargs=kwargs,
            classes=data.classes,
            data_config=data_config,
            config=resolved_config,
            lineage=lineage,
            metrics=metrics,
            versions=library_versions(),
            epoch=epoch,
        )

    def on_step(state: StepState) -> None:
        if state.step % cfg.trainer.log_every_n_steps == 0:
            tracker.log({"train/loss_step": state.loss, "train/lr": state.lr}, step=state.step)

    monitor, mode = cfg.trainer.monitor, cfg.trainer.monitor_mode
    best: float | None = None
    step = 0
    history: list[dict[str, float]] = []
    for epoch in range(cfg.trainer.max_epochs):
        set_epoch(data.loaders, epoch)
        train_metrics, step = train_one_epoch(
            train_model, data.loaders["train"], loss_fn, optimizer, scheduler, scaler,
            device=device, precision=precision, epoch=epoch, step=step,
            clip_grad_norm=cfg.trainer.clip_grad_norm, channels_last=cfg.trainer.channels_last, on_step=on_step,
        )  # fmt: skip
        train_metrics = mean_over_ranks(train_metrics)
        scheduler.step(epoch + 1)
        logits, targets = predict(train_model, data.loaders["val"], device=device, precision=precision, desc="val")
        val_metrics = classification_metrics(logits, targets, data.classes)
        epoch_metrics = {"epoch": epoch, **_prefixed("train", train_metrics), **_prefixed("val", _headline(val_metrics))}
        history.append(epoch_metrics)
        tracker.log(epoch_metrics, step=step)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in epoch_metrics.items() if k != "epoch"))

        if is_main():
            save_bundle(checkpoints / "last.pt", bundle(epoch_metrics, epoch))
        if is_better(epoch_metrics[monitor], best, mode):
            best = epoch_metrics[monitor]
            if is_main():
                save_bundle(checkpoints / "best.pt", bundle(epoch_metrics, epoch))

    best_bundle_path = checkpoints / "best.pt"
    best_state = torch.load(best_bundle_path, map_location="cpu", weights_only=True) if is_main() else None
    best_state = broadcast_object(best_state)
    model.load_state_dict(best_state["state_dict"])
    metrics = {f"train/{k}": v for k, v in train_metrics.items()}
    metrics |= {f"val/{k}": v for k, v in _headline(val_metrics).items()}
    metrics[f"best/{monitor}"] = float(best if best is not None else math.nan)
    metrics["best/epoch"] = float(best_state["epoch"])
    if "test" in data.loaders:
        logits, targets = predict(model, data.loaders["test"], device=device, precision=precision, desc="test")
        test_metrics = classification_metrics(logits, targets, data.classes)
        metrics |= _prefixed("test", test_metrics)
        matrix = confusion_matrix(logits, targets, len(data.classes))
        if is_main():
            figure = run_dir / "figures" / "confusion_matrix.png"
            plot_confusion_matrix(matrix, data.classes, figure, title="Test confusion matrix")
        tracker.confusion_matrix(matrix, data.classes, key="test/confusion_matrix")
        best_bundle = bundle({**best_state["metrics"], **_prefixed("test", _headline(test_metrics))}, best_state["epoch"])
        if is_main():
            save_bundle(best_bundle_path, best_bundle)

    if not is_main():
        return metrics
    write_metrics(run_dir / "metrics.json", metrics)
    (run_dir / "history.json").write_text(json.dumps(history, indent=2))
    tracker.summary(metrics)
    tracker.model_artifact(best_bundle_path, name=f"{cfg.model.name}-{cfg.data.name}", metadata={"classes": data.classes, **lineage})
    tracker.finish()
    print_metrics_table(metrics, title=f"{cfg.model.name} on {cfg.data.name}: final metrics ({run_dir})")
    return metrics


def _headline(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if "/" not in k}


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
@report_user_errors
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    objective = cfg.get("optimized_metric")
    return metrics.get(objective) if objective else None


if __name__ == "__main__":
    main()
