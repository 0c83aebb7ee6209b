"""The training recipe: a run's parts are built in named set-up steps, then fit, checkpoint, test, publish.

:class:`TrainingRun` holds the state of one run (model, loaders, optimizer, monitor, tracker, progress)
as attributes, so each step reads as a short method: ``setup()``, ``fit()`` (``train_epoch`` and
``checkpoint`` per epoch), ``test_best()`` and ``publish()``. The loops themselves are in
:mod:`image_classifier.training.engine`.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, cast

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from image_classifier import distributed as dist
from image_classifier.atomic import write_text_atomic
from image_classifier.checkpoint import Bundle, git_commit, library_versions, save_bundle
from image_classifier.config.checks import check_monitor
from image_classifier.data.loaders import DataLoaders, build_dataloaders, open_dataset, split_loader
from image_classifier.data.samplers import set_epoch, start_at_batch
from image_classifier.metrics import classification_metrics, confusion_matrix
from image_classifier.model import (
    create_model,
    eval_data_config,
    model_data_config,
    model_kwargs,
    weights_provenance,
)
from image_classifier.project import project_root
from image_classifier.reporting import print_metrics_table, write_metrics
from image_classifier.runtime import seed_everything, select_device, usable_precision
from image_classifier.training.engine import EpochTotals, StepState, predict, train_one_epoch
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
from image_classifier.training.monitor import EarlyStopping, Monitor
from image_classifier.training.optim import build_optimizer, build_scheduler
from image_classifier.training.resume import (
    CheckpointWriter,
    Progress,
    Resumable,
    find_resume_checkpoint,
    gather_rank_states,
    load_resume_bundle,
)
from image_classifier.training.tracking import create_tracker
from image_classifier.weights import LINEAGE_KEY

log = logging.getLogger(__name__)


def headline(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics without a ``/`` (no per-class values)."""
    return {k: v for k, v in metrics.items() if "/" not in k}


def prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


class TrainingRun:
    """One training run of ``cfg``: ``run()`` sets up, fits, tests the best weights and publishes them."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.paths.output_dir)
        self.checkpoints = self.run_dir / "checkpoints"
        self.precision = str(cfg.trainer.precision)
        self.probe_metrics: dict[str, float] = {}
        self.writer = CheckpointWriter()

    def run(self) -> dict[str, float]:
        """Train, validate every epoch, checkpoint, then test the best weights. Returns flat metrics.

        A process of the job that dies or stops answering fails this one with a one-line reason.
        """
        with dist.lost_peers_in_one_line(self.cfg.trainer.dist_timeout_s):
            self.setup()
            try:
                self.fit()
            finally:
                self.writer.wait()  # every checkpoint is on disk before best.pt is tested, or the process ends
            metrics = self.test_best()
            if dist.is_main():
                self.publish(metrics)
        return metrics

    # --- set-up -------------------------------------------------------------------------------------

    def setup(self) -> None:
        self.setup_runtime()
        self.setup_data_and_model()
        self.setup_optimization()
        self.setup_tracking()

    def setup_runtime(self) -> None:
        """Process group, seeds (each rank its own augmentation and dropout streams) and device."""
        trainer = self.cfg.trainer
        self.rank = dist.init_distributed(trainer.dist_timeout_s, trainer.dist_setup_timeout_s).rank
        seed_everything(trainer.seed + self.rank, trainer.deterministic)
        self.device = dist.rank_device(select_device(trainer.device))
        self.precision = usable_precision(self.precision, self.device)
        log.info(
            "Training %s on %s (%s, precision %s) in %s",
            self.cfg.model.name,
            self.cfg.data.name,
            self.device,
            self.precision,
            self.run_dir,
        )

    def setup_data_and_model(self) -> None:
        """The dataset, the model (resumed, or with its head fitted by the linear probe) and the loaders."""
        cfg = self.cfg
        with dist.local_main_first():
            dataset = open_dataset(cfg.data)
        check_monitor(cfg, len(dataset.classes))
        self.kwargs = model_kwargs(cfg.model)
        self.model = create_model(
            cfg.model.name,
            num_classes=len(dataset.classes),
            pretrained=cfg.model.pretrained,
            weights=cfg.model.weights,
            **self.kwargs,
        )
        self.resume_from = find_resume_checkpoint(cfg.trainer.resume, self.run_dir)
        self.resumed = (
            load_resume_bundle(self.resume_from, cfg.model.name, dataset.classes) if self.resume_from else None
        )
        if self.resumed is not None:
            state = self.resumed.training_state
            log.info(
                "Resuming from %s at epoch %d, batch %d (step %d)",
                self.resume_from, state["next_epoch"], state.get("batch", 0), state["step"],
            )  # fmt: skip
            self.model.load_state_dict(self.resumed.state_dict)
        self.data_config = eval_data_config(self.model, cfg.data)  # the evaluation (and serving) input
        self.data: DataLoaders = build_dataloaders(
            cfg.data, dataset, self.data_config, seed=cfg.trainer.seed, device=self.device
        )
        memory_format = torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=memory_format)  # type: ignore[call-overload]  # stubs lack it
        if cfg.trainer.freeze_bn_stats:
            log.info("BatchNorm statistics frozen in %d layers", freeze_batchnorm_statistics(self.model))
        if cfg.trainer.linear_probe.enabled and self.resumed is None:  # a resumed run's head is in its checkpoint
            probe_size = cfg.trainer.linear_probe.image_size
            probe_config = model_data_config(self.model, probe_size, cfg.data.get("crop_pct")) if probe_size else None
            probe_loader = split_loader(
                cfg.data, dataset, "train", probe_config or self.data_config, cfg.trainer.seed, device=self.device
            )
            self.probe_metrics = linear_probe(
                self.model, probe_loader, cfg.trainer.linear_probe, device=self.device, precision=self.precision
            )
        self.train_model = dist.wrap_model(
            self.model,
            self.device,
            sync_batchnorm=cfg.trainer.sync_batchnorm,
            find_unused_parameters=cfg.trainer.head_warmup_epochs > 0,  # the frozen backbone gets no gradients
        )
        if cfg.trainer.compile:
            self.train_model = cast(nn.Module, torch.compile(self.train_model))

    def setup_optimization(self) -> None:
        """Optimizer, schedule, loss, Mixup/CutMix, EMA, the monitor; restored from ``last.pt`` when resuming."""
        cfg, train_loader = self.cfg, self.data.loaders["train"]
        self.optimizer = build_optimizer(self.model, cfg.optimizer, cfg.data.batch_size)
        updates = math.ceil(len(train_loader) / cfg.trainer.accumulate_grad_batches)
        self.scheduler = build_scheduler(self.optimizer, cfg.scheduler, cfg.trainer.max_epochs, updates)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "16-mixed")
        num_classes = len(self.data.classes)
        self.mixup = build_mixup(cfg.trainer, num_classes, cast(int, train_loader.batch_size))
        self.loss_fn = build_loss(cfg.trainer.label_smoothing, self.mixup)
        self.ema = build_ema(cfg.trainer, self.model)
        # with EMA on, the EMA weights are the result: they are monitored, kept as best.pt and tested
        name = ema_metric_name(cfg.trainer.monitor) if self.ema is not None else cfg.trainer.monitor
        self.monitor = Monitor(name, cfg.trainer.monitor_mode)
        margin = cfg.trainer.linear_probe.stop_margin if cfg.trainer.linear_probe.enabled else None
        self.stopper = EarlyStopping(self.monitor, **cfg.trainer.early_stopping, margin=margin)
        self.resumable = Resumable(
            self.optimizer, self.scheduler, self.scaler, self.ema, self.monitor, self.stopper, train_loader.generator
        )
        resumed = self.resumed
        self.progress = self.resumable.load_state_dict(resumed.training_state, self.rank) if resumed else Progress()

    def setup_tracking(self) -> None:
        """The tracker (W&B on the main process) and the lineage every bundle carries."""
        cfg, resumed = self.cfg, self.resumed
        self.resolved_config = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        run_id = resumed.training_state.get("wandb_run_id") if resumed is not None else None
        logger_cfg = cfg.get("logger") if dist.is_main() else None
        self.tracker = create_tracker(logger_cfg, self.run_dir, self.resolved_config, run_id=run_id)
        self.versions = library_versions()
        self.lineage: dict[str, Any] = {
            "git_commit": git_commit(project_root()),
            "data_fingerprint": self.data.dataset.fingerprint,
            "run_dir": str(self.run_dir),
        }
        if self.tracker.run_id:
            self.lineage["wandb_run_id"] = self.tracker.run_id
        if self.resume_from is not None:
            self.lineage["resumed_from"] = str(self.resume_from)
        if (provenance := weights_provenance(cfg.model.weights, cfg.model.name)) is not None:
            self.lineage[LINEAGE_KEY] = provenance

    # --- the epoch loop -----------------------------------------------------------------------------

    def fit(self) -> None:
        """Epochs until ``trainer.max_epochs`` or early stopping, each followed by its checkpoint.

        A resumed run restores its RNG streams here, right before the first batch, so nothing set up in between
        draws from them.
        """
        if self.resumed is not None:
            self.resumable.restore_rng(self.resumed.training_state, self.rank)
        elif self.probe_metrics:
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
        every = trainer.checkpoint_every_n_steps
        if every and state.step % every == 0 and state.batch < state.batches:  # the epoch's end has its own
            history = self.progress.history
            self.save_last(self.progress.next_epoch - 1, history[-1] if history else {})

    def validate(self, net: nn.Module, prefix: str) -> dict[str, float]:
        logits, targets = predict(
            net, self.data.loaders["val"], device=self.device, precision=self.precision, desc=prefix
        )
        return prefixed(prefix, headline(classification_metrics(logits, targets, self.data.classes)))

    def checkpoint(self, epoch: int, metrics: dict[str, float]) -> None:
        """``best.pt`` when the monitored metric improved, then ``last.pt`` (so an epoch's last.pt has its best.pt)."""
        value = metrics[self.monitor.name]
        if self.stopper.observe(value):
            log.info("Early stopping after epoch %d: %s", epoch, self.stopper.reason)
        best: list[tuple[Path, Bundle]] = []
        if self.monitor.update(value, epoch) and dist.is_main():
            best_weights = self.ema.module if self.ema is not None else self.model
            best.append((self.checkpoints / "best.pt", self.bundle(metrics, epoch, best_weights)))
        self.save_last(epoch, metrics, *best)

    def save_last(self, epoch: int, metrics: dict[str, float], *before: tuple[Path, Bundle]) -> None:
        """``last.pt`` (after the bundles ``before``): the weights and training state after ``epoch``, the last
        complete one, and inside an epoch its batches so far. Written in the background from a copy taken now."""
        train_loader = self.data.loaders["train"]
        ranks = gather_rank_states(train_loader.generator, self.progress.epoch_totals)  # each rank its own streams
        if dist.is_main():
            state = self.resumable.state_dict(self.progress, self.tracker.run_id, ranks)
            last = self.bundle(metrics, epoch, self.model, training_state=state)
            self.writer.write(*before, (self.checkpoints / "last.pt", last))

    def bundle(self, metrics: dict[str, float], epoch: int, weights: nn.Module, **extra: Any) -> Bundle:
        return Bundle(
            state_dict=weights.state_dict(),
            model_name=self.cfg.model.name,
            model_kwargs=self.kwargs,
            classes=self.data.classes,
            data_config=self.data_config,
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
        best_path = self.checkpoints / "best.pt"
        best = torch.load(best_path, map_location="cpu", weights_only=True) if dist.is_main() else None
        best = dist.broadcast_object(best)
        self.model.load_state_dict(best["state_dict"])
        metrics = {k: v for k, v in self.progress.history[-1].items() if k != "epoch"} | self.probe_metrics
        metrics[f"best/{self.monitor.name}"] = float(self.monitor.best if self.monitor.best is not None else math.nan)
        metrics["best/epoch"] = float(best["epoch"])
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
            tested = {**best["metrics"], **prefixed("test", headline(test_metrics))}
            save_bundle(best_path, self.bundle(tested, best["epoch"], self.model))
        return metrics | prefixed("test", test_metrics)

    def publish(self, metrics: dict[str, float]) -> None:
        """metrics.json, history.json, the model card, and the tracker's summary and model artifact."""
        cfg, best_path = self.cfg, self.checkpoints / "best.pt"
        write_metrics(self.run_dir / "metrics.json", metrics)
        write_text_atomic(self.run_dir / "history.json", json.dumps(self.progress.history, indent=2))
        write_model_card(best_path, self.data.dataset.summary)
        self.tracker.summary(metrics)
        metadata = {"classes": self.data.classes, **self.lineage}
        self.tracker.model_artifact(best_path, name=f"{cfg.model.name}-{cfg.data.name}", metadata=metadata)
        self.tracker.finish()
        print_metrics_table(metrics, title=f"{cfg.model.name} on {cfg.data.name}: final metrics ({self.run_dir})")
