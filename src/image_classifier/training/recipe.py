"""The training recipe: set-up steps that return what they build, then fit, checkpoint, test, publish.

:class:`TrainingRun` is set up when it is made, one step after the other, each taking what the steps before
it built and returning what it builds: the runtime (process group, seeds, device), the dataset, the
checkpoints and what to resume from (:class:`~image_classifier.training.checkpointing.CheckpointManager`),
the model, its data configs and loaders (:mod:`image_classifier.run_parts`; the model resumed, or with its
head fitted by the linear probe), optimization, and the tracker. ``run()`` restores a resumed run's state,
fits (``train_epoch`` and ``checkpoint`` per epoch), tests the best weights and publishes them, and finishes
the tracker however it ends. The loops themselves are in :mod:`image_classifier.training.engine` and
:mod:`image_classifier.prediction`.
"""

from __future__ import annotations

import json
import logging
import math
from functools import partial
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader

from image_classifier import distributed as dist
from image_classifier.atomic import write_text_atomic
from image_classifier.checkpoint import Bundle, git_commit, library_versions
from image_classifier.config.checks import check_monitor
from image_classifier.data.layout import PreparedDataset
from image_classifier.data.loaders import DataLoaders, open_dataset
from image_classifier.data.samplers import set_epoch, start_at_batch
from image_classifier.metrics import classification_metrics, confusion_matrix
from image_classifier.model import model_data_config, weights_provenance
from image_classifier.optim import build_optimizer, build_scheduler
from image_classifier.prediction import predict
from image_classifier.project import project_root
from image_classifier.reporting import print_metrics_table, write_metrics
from image_classifier.run_parts import RunParts, build_run_parts
from image_classifier.runtime import seed_everything, select_device, usable_precision
from image_classifier.training.checkpointing import CheckpointManager, ResumePoint
from image_classifier.training.engine import EpochTotals, StepState, train_one_epoch
from image_classifier.training.finetune import (
    apply_head_warmup,
    build_ema,
    build_loss,
    build_mixup,
    freeze_batchnorm_statistics,
    monitored_metric,
)
from image_classifier.training.linear_probe import linear_probe
from image_classifier.training.model_card import write_model_card
from image_classifier.training.monitor import EarlyStopping, Monitor
from image_classifier.training.resume import Progress, Resumable, gather_rank_states
from image_classifier.training.tracking import Tracker, create_tracker, finishing
from image_classifier.weights import LINEAGE_KEY

log = logging.getLogger(__name__)


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics without a ``/`` (no per-class values)."""
    return {k: v for k, v in metrics.items() if "/" not in k}


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


def run_training(cfg: DictConfig) -> dict[str, float]:
    """Set up ``cfg``'s run and run it (see :class:`TrainingRun`); flat metrics.

    A process of the job that dies or stops answering fails this one with a one-line reason.
    """
    with dist.lost_peers_in_one_line(cfg.trainer.dist_timeout_s):
        return TrainingRun(cfg).run()


class TrainingRun:
    """One training run of ``cfg``, set up when made; ``run()`` fits, tests the best weights and publishes them."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        trainer = cfg.trainer
        self.run_dir = Path(cfg.paths.output_dir)
        self.rank, self.device, self.precision = self.setup_runtime()
        dataset = self.setup_dataset()
        self.monitor = Monitor(monitored_metric(trainer), trainer.monitor_mode)
        self.checkpoints = CheckpointManager(
            self.run_dir / "checkpoints", self.monitor, every_n_steps=trainer.checkpoint_every_n_steps,
            writes=dist.is_main(),
        )  # fmt: skip
        self.resumed = self.checkpoints.resume_point(trainer.resume, cfg.model.name, dataset.classes)
        self.parts, self.data = self.setup_parts(dataset, self.resumed.bundle.state_dict if self.resumed else None)
        self.model = self.parts.model
        probe = trainer.linear_probe.enabled and self.resumed is None  # a resumed run's head is in its checkpoint
        self.probe_metrics = self.setup_linear_probe(self.parts) if probe else {}
        self.train_model = self.setup_train_model(self.model)
        train_loader = self.data.loaders["train"]
        self.optimizer, self.scheduler, self.scaler = self.setup_optimizer(self.model, train_loader)
        self.mixup, self.loss_fn, self.ema = self.setup_regularisation(self.model, train_loader, len(dataset.classes))
        margin = trainer.linear_probe.stop_margin if trainer.linear_probe.enabled else None
        self.stopper = EarlyStopping(self.monitor, **trainer.early_stopping, margin=margin)
        self.resumable = Resumable(
            self.optimizer, self.scheduler, self.scaler, self.ema, self.monitor, self.stopper, train_loader.generator
        )
        self.progress = Progress()  # a resumed run's is restored by run(), right before its first batch
        self.resolved_config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        self.versions = library_versions()
        # last: nothing after it can fail before run() finishes it
        self.tracker, self.lineage = self.setup_tracking(dataset, self.resumed, self.resolved_config)

    def run(self) -> dict[str, float]:
        """Restore a resumed run's state, train (validating every epoch, checkpointing), then test the best weights
        and publish them. Returns flat metrics. The tracker is finished however the run ends."""
        with finishing(self.tracker):
            self.progress = self.restore()
            try:
                self.fit()
            finally:
                self.checkpoints.wait()  # every checkpoint is on disk before best.pt is tested, or the process ends
            metrics = self.test_best()
            if dist.is_main():
                self.publish(metrics)
        return metrics

    # --- set-up -------------------------------------------------------------------------------------

    def setup_runtime(self) -> tuple[int, torch.device, str]:
        """Process group, seeds (each rank its own augmentation and dropout streams), device and precision."""
        trainer = self.cfg.trainer
        rank = dist.init_distributed(trainer.dist_timeout_s, trainer.dist_setup_timeout_s).rank
        seed_everything(trainer.seed + rank, trainer.deterministic)
        device = dist.rank_device(select_device(trainer.device))
        precision = usable_precision(str(trainer.precision), device)
        log.info(
            "Training %s on %s (%s, precision %s) in %s",
            self.cfg.model.name, self.cfg.data.name, device, precision, self.run_dir,
        )  # fmt: skip
        return rank, device, precision

    def setup_dataset(self) -> PreparedDataset:
        """The prepared dataset (made once per machine), and the monitored metric checked against its classes."""
        with dist.local_main_first():
            dataset = open_dataset(self.cfg.data)
        check_monitor(self.cfg, len(dataset.classes))
        return dataset

    def setup_parts(
        self, dataset: PreparedDataset, model_state_dict: dict[str, torch.Tensor] | None
    ) -> tuple[RunParts, DataLoaders]:
        """The model (with ``model_state_dict`` when resuming), its data configs and the loaders; the model on the
        device, its BatchNorm statistics frozen if asked."""
        trainer = self.cfg.trainer
        parts = build_run_parts(self.cfg, self.device, dataset=dataset, model_state_dict=model_state_dict)
        loaders = parts.loaders()
        memory_format = torch.channels_last if trainer.channels_last else torch.contiguous_format
        parts.model.to(self.device, memory_format=memory_format)  # type: ignore[call-overload]  # stubs lack it
        if trainer.freeze_bn_stats:
            log.info("BatchNorm statistics frozen in %d layers", freeze_batchnorm_statistics(parts.model))
        return parts, loaders

    def setup_linear_probe(self, parts: RunParts) -> dict[str, float]:
        """Fit the head of ``parts.model`` on its frozen backbone's features of the training split (at
        ``trainer.linear_probe.image_size``, else the eval size); the probe's metrics."""
        cfg = self.cfg.trainer.linear_probe
        size = cfg.image_size
        config = model_data_config(parts.model, size, self.cfg.data.get("crop_pct")) if size else None
        loader = parts.loader("train", data_config=config)
        return linear_probe(parts.model, loader, cfg, device=self.device, precision=self.precision)

    def setup_train_model(self, model: nn.Module) -> nn.Module:
        """``model`` as the loop steps it: under DistributedDataParallel in a job of many, compiled if asked."""
        trainer = self.cfg.trainer
        train_model = dist.wrap_model(
            model,
            self.device,
            sync_batchnorm=trainer.sync_batchnorm,
            find_unused_parameters=trainer.head_warmup_epochs > 0,  # the frozen backbone gets no gradients
        )
        return cast(nn.Module, torch.compile(train_model)) if trainer.compile else train_model

    def setup_optimizer(
        self, model: nn.Module, train_loader: DataLoader
    ) -> tuple[torch.optim.Optimizer, Any, torch.amp.GradScaler]:
        """Optimizer, its schedule (per optimizer update) and the gradient scaler (on for ``16-mixed``)."""
        cfg = self.cfg
        optimizer = build_optimizer(model, cfg.optimizer, cfg.data.batch_size)
        updates = math.ceil(len(train_loader) / cfg.trainer.accumulate_grad_batches)
        scheduler = build_scheduler(optimizer, cfg.scheduler, cfg.trainer.max_epochs, updates)
        return optimizer, scheduler, torch.amp.GradScaler(self.device.type, enabled=self.precision == "16-mixed")

    def setup_regularisation(
        self, model: nn.Module, train_loader: DataLoader, num_classes: int
    ) -> tuple[Any, nn.Module, ModelEmaV3 | None]:
        """Mixup/CutMix, the loss (soft targets under Mixup) and the EMA of ``model``'s weights."""
        trainer = self.cfg.trainer
        mixup = build_mixup(trainer, num_classes, cast(int, train_loader.batch_size))
        return mixup, build_loss(trainer.label_smoothing, mixup), build_ema(trainer, model)

    def setup_tracking(
        self, dataset: PreparedDataset, resumed: ResumePoint | None, config: dict[str, Any]
    ) -> tuple[Tracker, dict[str, Any]]:
        """The tracker (W&B on the main process, continuing a resumed run's), given the resolved ``config``, and
        the lineage every bundle carries."""
        cfg = self.cfg
        lineage: dict[str, Any] = {
            "git_commit": git_commit(project_root()),
            "data_fingerprint": dataset.fingerprint,
            "run_dir": str(self.run_dir),
        }
        more: dict[str, Any] = {"resumed_from": str(resumed.path)} if resumed is not None else {}
        if (provenance := weights_provenance(cfg.model.weights, cfg.model.name)) is not None:
            more[LINEAGE_KEY] = provenance
        run_id = resumed.training_state.get("wandb_run_id") if resumed is not None else None
        logger_cfg = cfg.get("logger") if dist.is_main() else None
        tracker = create_tracker(logger_cfg, self.run_dir, config, run_id=run_id)
        if tracker.run_id:
            lineage["wandb_run_id"] = tracker.run_id
        return tracker, lineage | more

    def restore(self) -> Progress:
        """Where the loop starts: a resumed run's optimizer, schedule, scaler, EMA, monitor, early stopping and RNG
        streams restored from its ``last.pt``, right before the first batch; the start for a fresh run."""
        if self.resumed is None:
            return Progress()
        state = self.resumed.training_state
        log.info(
            "Resuming from %s at epoch %d, batch %d (step %d)",
            self.resumed.path, state["next_epoch"], state.get("batch", 0), state["step"],
        )  # fmt: skip
        return self.resumable.load_state_dict(state, self.rank)

    # --- the epoch loop -----------------------------------------------------------------------------

    def fit(self) -> None:
        """Epochs until ``trainer.max_epochs`` or early stopping, each followed by its checkpoint (the linear
        probe's model first, when it ran)."""
        if self.probe_metrics:
            self.checkpoint_probe()
        while self.progress.next_epoch < self.cfg.trainer.max_epochs and not self.stopper.stopped:
            epoch = self.progress.next_epoch
            metrics = self.train_epoch(epoch)
            self.progress.history.append(metrics)
            self.progress.next_epoch, self.progress.epoch_totals = epoch + 1, EpochTotals()
            self.tracker.log(metrics, step=self.progress.step)
            log.info("epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch"))
            self.checkpoint(epoch, metrics)

    def checkpoint_probe(self) -> None:
        """The linear probe's model is the first candidate for ``best.pt`` (as epoch -1): fine-tuning replaces it
        only by beating its validation metric, so a fine-tune that learns worse than the probe never ships."""
        metrics = self.validate(self.train_model, "val")
        if self.ema is not None:  # the EMA weights start as a copy of the probed model
            metrics |= {key.replace("val/", "val_ema/", 1): value for key, value in metrics.items()}
        self.probe_metrics |= {
            key.replace("val/", "probe/val_", 1): metrics[key] for key in ("val/accuracy", "val/loss")
        }
        self.tracker.log(metrics, step=self.progress.step)
        log.info("linear probe: %s", ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
        self.stopper.reference = metrics[self.monitor.name]  # a fine-tune this far below the probe stops
        self.checkpoint(-1, {"epoch": -1, **metrics})

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split, then validation (of the EMA weights too); the epoch's metrics."""
        trainer, loaders = self.cfg.trainer, self.data.loaders
        set_epoch(loaders, epoch)
        start_at_batch(loaders["train"], self.progress.batch)  # resumed from a checkpoint inside the epoch
        apply_head_warmup(self.model, epoch, trainer.head_warmup_epochs)
        train_metrics, self.progress.step = train_one_epoch(
            self.train_model, loaders["train"], self.loss_fn, self.optimizer, self.scheduler, self.scaler,
            device=self.device, precision=self.precision, epoch=epoch, step=self.progress.step,
            clip_grad_norm=trainer.clip_grad_norm, channels_last=trainer.channels_last, on_step=self.on_step,
            accumulate=trainer.accumulate_grad_batches, mixup=self.mixup, ema=self.ema,
            totals=self.progress.epoch_totals, bn_eval=trainer.bn_eval,
        )  # fmt: skip
        self.scheduler.step(epoch + 1)
        metrics = {"epoch": epoch, **prefixed("train", dist.mean_over_ranks(train_metrics))}
        metrics |= self.validate(self.train_model, "val")
        if self.ema is not None:
            metrics |= self.validate(self.ema.module, "val_ema")
        return metrics

    def on_step(self, state: StepState) -> None:
        """After each optimizer step: log every ``log_every_n_steps``; last.pt every ``checkpoint_every_n_steps``."""
        trainer = self.cfg.trainer
        self.progress.step = state.step
        if state.step % trainer.log_every_n_steps == 0:
            self.tracker.log({"train/loss_step": state.loss, "train/lr": state.lr}, step=state.step)
        history = self.progress.history
        last = partial(self.last_bundle, self.progress.next_epoch - 1, history[-1] if history else {})
        self.checkpoints.save_within_epoch(state.step, state.batch, state.batches, last)

    def validate(self, net: nn.Module, prefix: str) -> dict[str, float]:
        logits, targets = predict(
            net, self.data.loaders["val"], device=self.device, precision=self.precision, desc=prefix
        )
        return prefixed(prefix, headline(classification_metrics(logits, targets, self.data.classes)))

    def checkpoint(self, epoch: int, metrics: dict[str, float]) -> None:
        """Count the epoch for early stopping, then save: ``best.pt`` (the EMA weights when EMA is on) if the
        monitored metric improved, and ``last.pt``."""
        if self.stopper.observe(metrics[self.monitor.name]):
            log.info("Early stopping after epoch %d: %s", epoch, self.stopper.reason)
        best_weights = self.ema.module if self.ema is not None else self.model
        best = partial(self.bundle, metrics, epoch, best_weights)
        self.checkpoints.save(epoch, metrics, last=partial(self.last_bundle, epoch, metrics), best=best)

    def last_bundle(self, epoch: int, metrics: dict[str, float]) -> Bundle:
        """The weights and training state after ``epoch``, the last complete one, and inside an epoch its batches
        so far. Call it on every process: it gathers each rank's RNG streams and sums of the epoch."""
        ranks = gather_rank_states(self.data.loaders["train"].generator, self.progress.epoch_totals)
        state = self.resumable.state_dict(self.progress, self.tracker.run_id, ranks)
        return self.bundle(metrics, epoch, self.model, training_state=state)

    def bundle(self, metrics: dict[str, float], epoch: int, weights: nn.Module, **extra: Any) -> Bundle:
        return Bundle(
            state_dict=weights.state_dict(),
            model_name=self.cfg.model.name,
            model_kwargs=self.parts.model_kwargs,
            classes=self.data.classes,
            data_config=self.parts.data_configs.eval,
            config=self.resolved_config,
            lineage=self.lineage,
            metrics=metrics,
            versions=self.versions,
            epoch=epoch,
            **extra,
        )

    # --- after training -----------------------------------------------------------------------------

    def test_best(self) -> dict[str, float]:
        """Load ``best.pt`` on every rank and test it; the run's final metrics (last epoch, best, test).

        The test runs in float32 whatever ``trainer.precision`` trained in: the shipped model's score is the one
        ``invoke evaluate`` and the served model (float32, or its ONNX export) give.
        """
        best = self.checkpoints.load_best()
        self.model.load_state_dict(best.state_dict)
        metrics = {k: v for k, v in self.progress.history[-1].items() if k != "epoch"} | self.probe_metrics
        metrics[f"best/{self.monitor.name}"] = float(self.monitor.best if self.monitor.best is not None else math.nan)
        metrics["best/epoch"] = float(best.epoch)
        if "test" not in self.data.loaders:
            return metrics
        logits, targets = predict(
            self.model, self.data.loaders["test"], device=self.device, precision="32", desc="test"
        )
        test_metrics = classification_metrics(logits, targets, self.data.classes)
        matrix = confusion_matrix(logits, targets, len(self.data.classes))
        self.tracker.confusion_matrix(matrix, self.data.classes, key="test/confusion_matrix")
        if dist.is_main():
            from image_classifier.plots import plot_confusion_matrix  # matplotlib: only once the run is done

            figure = self.run_dir / "figures" / "confusion_matrix.png"
            plot_confusion_matrix(matrix, self.data.classes, figure, title="Test confusion matrix")
            tested = {**best.metrics, **prefixed("test", headline(test_metrics))}
            self.checkpoints.replace_best(self.bundle(tested, best.epoch, self.model))
        return metrics | prefixed("test", test_metrics)

    def publish(self, metrics: dict[str, float]) -> None:
        """metrics.json, history.json, the model card, and the tracker's summary and model artifact."""
        cfg, best_path = self.cfg, self.checkpoints.best_path
        write_metrics(self.run_dir / "metrics.json", metrics)
        write_text_atomic(self.run_dir / "history.json", json.dumps(self.progress.history, indent=2))
        write_model_card(best_path, self.data.dataset.summary)
        self.tracker.summary(metrics)
        metadata = {"classes": self.data.classes, **self.lineage}
        self.tracker.model_artifact(best_path, name=f"{cfg.model.name}-{cfg.data.name}", metadata=metadata)
        print_metrics_table(metrics, title=f"{cfg.model.name} on {cfg.data.name}: final metrics ({self.run_dir})")
