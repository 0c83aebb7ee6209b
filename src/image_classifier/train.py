"""Hydra entry point: ``python -m image_classifier.train [overrides]``; ``train(cfg)`` returns metrics."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, cast

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn

from image_classifier.checkpoint import Bundle, git_commit, library_versions, save_bundle
from image_classifier.data.loaders import KNOWN_DATASETS, build_dataloaders, open_dataset, split_loader
from image_classifier.errors import ConfigError
from image_classifier.metrics import classification_metrics, confusion_matrix
from image_classifier.model import check_model_name, create_model, model_data_config, weights_provenance
from image_classifier.plots import plot_confusion_matrix
from image_classifier.reporting import print_metrics_table, write_metrics
from image_classifier.runtime import config_dir, project_root, report_user_errors, seed_everything, select_device
from image_classifier.training.distributed import (
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
from image_classifier.training.early_stopping import EarlyStopping
from image_classifier.training.engine import PRECISIONS, StepState, predict, train_one_epoch
from image_classifier.training.finetune import (
    apply_head_warmup,
    build_ema,
    build_loss,
    build_mixup,
    ema_metric_name,
    freeze_batchnorm_statistics,
)
from image_classifier.training.linear_probe import linear_probe
from image_classifier.training.model_card import write_model_card
from image_classifier.training.resume import (
    Progress,
    Resumable,
    capture_rng_all_ranks,
    find_resume_checkpoint,
    load_resume_bundle,
)
from image_classifier.training.tracking import create_tracker
from image_classifier.weights import LINEAGE_KEY

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
    if cfg.trainer.accumulate_grad_batches < 1:
        raise ConfigError(f"trainer.accumulate_grad_batches must be >= 1, got {cfg.trainer.accumulate_grad_batches}.")


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The keyword arguments that rebuild the architecture (no weight sources)."""
    extra = cfg.model.get("kwargs")
    kwargs: dict[str, Any] = OmegaConf.to_container(extra, resolve=True) if extra is not None else {}  # type: ignore[assignment]
    kwargs["drop_rate"] = cfg.model.drop_rate
    if cfg.model.get("drop_path_rate") is not None:
        kwargs["drop_path_rate"] = cfg.model.drop_path_rate
    return kwargs


def is_better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, validate every epoch, checkpoint, then test the best weights. Returns flat metrics."""
    validate_config(cfg)
    rank = init_distributed(cfg.trainer.get("dist_timeout_s", 600)).rank
    # each rank its own augmentation and dropout streams; DDP starts every rank from rank 0's weights
    seed_everything(cfg.trainer.seed + rank, cfg.trainer.deterministic)
    device = rank_device(select_device(cfg.trainer.device))
    precision = str(cfg.trainer.precision)
    run_dir = Path(cfg.paths.output_dir)
    checkpoints = run_dir / "checkpoints"
    log.info("Training %s on %s (%s, precision %s) in %s", cfg.model.name, cfg.data.name, device, precision, run_dir)

    kwargs = model_kwargs(cfg)
    with local_main_first():
        dataset = open_dataset(cfg.data)
    classes = dataset.classes
    model = create_model(
        cfg.model.name, num_classes=len(classes), pretrained=cfg.model.pretrained, weights=cfg.model.weights, **kwargs
    )
    resume_from = find_resume_checkpoint(cfg.trainer.resume, run_dir)
    resumed = load_resume_bundle(resume_from, cfg.model.name, classes) if resume_from else None
    if resumed is not None:
        log.info("Resuming from %s (after epoch %d)", resume_from, resumed.epoch)
        model.load_state_dict(resumed.state_dict)
    eval_size = cfg.data.get("eval_image_size") or cfg.data.image_size  # evaluation (and serving) resolution
    data_config = model_data_config(model, eval_size, cfg.data.get("crop_pct"))
    data = build_dataloaders(cfg.data, dataset, data_config, seed=cfg.trainer.seed, device=device)
    memory_format = torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)  # type: ignore[call-overload]  # torch stubs lack this overload
    if cfg.trainer.get("freeze_bn_stats"):
        log.info("BatchNorm statistics frozen in %d layers", freeze_batchnorm_statistics(model))
    probe_cfg = cfg.trainer.get("linear_probe") or {}
    probe_metrics: dict[str, float] = {}
    if probe_cfg.get("enabled") and resumed is None:  # a resumed run's head is in its checkpoint
        probe_loader = split_loader(cfg.data, dataset, "train", data_config, cfg.trainer.seed, device=device)
        probe_metrics = linear_probe(model, probe_loader, probe_cfg, device=device, precision=precision)
    train_model = wrap_model(
        model,
        device,
        sync_batchnorm=cfg.trainer.get("sync_batchnorm", False),
        find_unused_parameters=cfg.trainer.head_warmup_epochs > 0,  # the frozen backbone gets no gradients
    )
    train_model = torch.compile(train_model) if cfg.trainer.compile else train_model  # type: ignore[assignment]

    optimizer = create_optimizer_v2(model, **optimizer_kwargs(cfg.optimizer, cfg.data.batch_size))
    scheduler, _ = create_scheduler_v2(
        optimizer,
        **OmegaConf.to_container(cfg.scheduler, resolve=True),  # type: ignore[arg-type]
        num_epochs=cfg.trainer.max_epochs,
        updates_per_epoch=math.ceil(len(data.loaders["train"]) / cfg.trainer.accumulate_grad_batches),
    )
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    mixup = build_mixup(cfg.trainer, len(classes), cast(int, data.loaders["train"].batch_size))
    loss_fn = build_loss(cfg.trainer.label_smoothing, mixup)
    ema = build_ema(cfg.trainer, model)
    stopper = EarlyStopping(**cfg.trainer.early_stopping, mode=cfg.trainer.monitor_mode)
    resumable = Resumable(optimizer, scheduler, scaler, ema, stopper, data.loaders["train"].generator)
    progress = resumable.load_state_dict(resumed.training_state, rank) if resumed is not None else Progress()
    resolved_config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    assert isinstance(resolved_config, dict)
    run_id = resumed.training_state.get("wandb_run_id") if resumed is not None else None
    tracker = create_tracker(cfg.get("logger") if is_main() else None, run_dir, resolved_config, run_id=run_id)
    lineage: dict[str, Any] = {
        "git_commit": git_commit(project_root()),
        "data_fingerprint": data.dataset.fingerprint,
        "run_dir": str(run_dir),
    }
    if tracker.run_id:
        lineage["wandb_run_id"] = tracker.run_id
    if resume_from is not None:
        lineage["resumed_from"] = str(resume_from)
    if (provenance := weights_provenance(cfg.model.weights, cfg.model.name)) is not None:
        lineage[LINEAGE_KEY] = provenance

    def bundle(metrics: dict[str, float], epoch: int, weights: nn.Module = model, **extra: Any) -> Bundle:
        return Bundle(
            state_dict=weights.state_dict(),
            model_name=cfg.model.name,
            model_kwargs=kwargs,
            classes=data.classes,
            data_config=data_config,
            config=resolved_config,
            lineage=lineage,
            metrics=metrics,
            versions=library_versions(),
            epoch=epoch,
            **extra,
        )

    def validate(net: nn.Module, prefix: str) -> dict[str, float]:
        logits, targets = predict(net, data.loaders["val"], device=device, precision=precision, desc=prefix)
        return _prefixed(prefix, _headline(classification_metrics(logits, targets, data.classes)))

    def on_step(state: StepState) -> None:
        if state.step % cfg.trainer.log_every_n_steps == 0:
            tracker.log({"train/loss_step": state.loss, "train/lr": state.lr}, step=state.step)

    # with EMA on, the EMA weights are the result: they are monitored, kept as best.pt and tested
    monitor = ema_metric_name(cfg.trainer.monitor) if ema is not None else cfg.trainer.monitor
    while progress.next_epoch < cfg.trainer.max_epochs and not stopper.stopped:
        epoch = progress.next_epoch
        set_epoch(data.loaders, epoch)
        apply_head_warmup(model, epoch, cfg.trainer.head_warmup_epochs)
        train_metrics, progress.step = train_one_epoch(
            train_model, data.loaders["train"], loss_fn, optimizer, scheduler, scaler,
            device=device, precision=precision, epoch=epoch, step=progress.step,
            clip_grad_norm=cfg.trainer.clip_grad_norm, channels_last=cfg.trainer.channels_last, on_step=on_step,
            accumulate=cfg.trainer.accumulate_grad_batches, mixup=mixup, ema=ema,
        )  # fmt: skip
        train_metrics = mean_over_ranks(train_metrics)
        scheduler.step(epoch + 1)
        epoch_metrics = {"epoch": epoch, **_prefixed("train", train_metrics), **validate(train_model, "val")}
        if ema is not None:
            epoch_metrics |= validate(ema.module, "val_ema")
        progress.history.append(epoch_metrics)
        progress.next_epoch = epoch + 1
        tracker.log(epoch_metrics, step=progress.step)
        log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in epoch_metrics.items() if k != "epoch"))

        improved = is_better(epoch_metrics[monitor], progress.best, cfg.trainer.monitor_mode)
        progress.best = epoch_metrics[monitor] if improved else progress.best
        if stopper.update(epoch_metrics[monitor]):
            log.info("Early stopping after epoch %d: no %s improvement in %d epochs", epoch, monitor, stopper.patience)
        rng = capture_rng_all_ranks(data.loaders["train"].generator)  # on every rank: each has its own streams
        if is_main():  # best.pt first: a last.pt on disk always has its best.pt
            if improved:
                save_bundle(checkpoints / "best.pt", bundle(epoch_metrics, epoch, weights=ema.module if ema else model))
            state = resumable.state_dict(progress, tracker.run_id, rng)
            save_bundle(checkpoints / "last.pt", bundle(epoch_metrics, epoch, training_state=state))

    best_bundle_path = checkpoints / "best.pt"
    best_state = torch.load(best_bundle_path, map_location="cpu", weights_only=True) if is_main() else None
    best_state = broadcast_object(best_state)
    model.load_state_dict(best_state["state_dict"])
    metrics = {k: v for k, v in progress.history[-1].items() if k != "epoch"} | probe_metrics
    metrics[f"best/{monitor}"] = float(progress.best if progress.best is not None else math.nan)
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
        best_bundle = bundle(
            {**best_state["metrics"], **_prefixed("test", _headline(test_metrics))}, best_state["epoch"]
        )
        if is_main():
            save_bundle(best_bundle_path, best_bundle)

    if not is_main():
        return metrics
    write_metrics(run_dir / "metrics.json", metrics)
    (run_dir / "history.json").write_text(json.dumps(progress.history, indent=2))
    write_model_card(best_bundle_path, data.dataset.summary)
    tracker.summary(metrics)
    tracker.model_artifact(
        best_bundle_path, name=f"{cfg.model.name}-{cfg.data.name}", metadata={"classes": data.classes, **lineage}
    )
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
