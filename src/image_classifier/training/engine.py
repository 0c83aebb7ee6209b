"""The training loop: one epoch of optimizer steps (validation runs :func:`image_classifier.prediction.predict`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from image_classifier.distributed import is_main
from image_classifier.prediction import autocast, device_batches


@dataclass
class StepState:
    """What the per-step callback is told: the step, its loss and learning rate, and the epoch's batches done of all."""

    step: int
    loss: float
    lr: float
    batch: int
    batches: int


@dataclass
class EpochTotals:
    """One rank's running sums over the batches of an epoch done so far (what a checkpoint inside the epoch keeps)."""

    batches: int = 0
    samples: int = 0
    loss: float = 0.0
    correct: int = 0

    def add(self, loss: float, correct: int, samples: int) -> None:
        """Count one batch of ``samples`` with mean ``loss`` and ``correct`` right predictions."""
        self.batches += 1
        self.samples += samples
        self.loss += loss * samples
        self.correct += correct

    def means(self) -> dict[str, float]:
        return {"loss": self.loss / max(self.samples, 1), "accuracy": self.correct / max(self.samples, 1)}


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: object,
    scaler: torch.amp.GradScaler,
    *,
    device: torch.device,
    precision: str,
    epoch: int,
    step: int,
    clip_grad_norm: float | None = None,
    channels_last: bool = False,
    on_step: Callable[[StepState], None] | None = None,
    accumulate: int = 1,
    mixup: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ema: ModelEmaV3 | None = None,
    totals: EpochTotals | None = None,
    bn_eval: bool = False,
) -> tuple[dict[str, float], int]:
    """One pass over ``loader``; returns mean loss and accuracy, and the updated global step.

    The optimizer steps every ``accumulate`` batches (and after the last one); ``step`` counts
    optimizer updates. ``mixup`` mixes each batch (accuracy is against the unmixed labels);
    ``ema`` is updated after every optimizer step. ``totals`` holds the epoch's batches already
    done when it resumes inside the epoch (``loader`` then yields only the rest); it is updated
    after every batch, and ``on_step`` is called after every optimizer step. With ``bn_eval`` the BatchNorm
    layers stay in inference mode: batches are normalised by the running statistics, which stay as they are.
    """
    model.train()
    if bn_eval:
        set_batchnorm_eval(model)
    totals = totals if totals is not None else EpochTotals()
    first = totals.batches
    length = first + len(loader)
    batches = device_batches(loader, device, channels_last)
    progress = tqdm(batches, total=length, initial=first, desc=f"epoch {epoch}", leave=False, disable=not is_main())
    optimizer.zero_grad(set_to_none=True)
    for index, (images, targets) in enumerate(progress, start=first):
        update = (index + 1) % accumulate == 0 or index + 1 == length
        inputs, loss_targets = mixup(images, targets) if mixup is not None else (images, targets)
        with _gradient_sync(model, update):
            with autocast(device, precision):
                logits = model(inputs)
                loss = loss_fn(logits, loss_targets)
            scaler.scale(loss / accumulate if accumulate > 1 else loss).backward()
        if update:
            step = _optimizer_step(model, optimizer, scheduler, scaler, step, clip_grad_norm, ema)
        batch_loss = loss.item()
        totals.add(batch_loss, int((logits.argmax(dim=1) == targets).sum()), targets.shape[0])
        lr = optimizer.param_groups[0]["lr"]
        progress.set_postfix(loss=f"{batch_loss:.3f}", acc=f"{totals.means()['accuracy']:.3f}", lr=f"{lr:.2e}")
        if on_step is not None and update:
            on_step(StepState(step=step, loss=batch_loss, lr=lr, batch=index + 1, batches=length))
    return totals.means(), step


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_batchnorm_eval(model: nn.Module) -> int:
    """Put every BatchNorm layer of ``model`` in inference mode (its affine weights still train); returns the count."""
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.eval()
    return len(layers)


def _optimizer_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: object,
    scaler: torch.amp.GradScaler,
    step: int,
    clip_grad_norm: float | None,
    ema: ModelEmaV3 | None,
) -> int:
    """Clip, step the optimizer (through the grad scaler), the schedule and the EMA; returns the new step count."""
    if clip_grad_norm:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    step += 1
    scheduler.step_update(num_updates=step)  # type: ignore[attr-defined]
    if ema is not None:
        ema.update(model, step=step)
    return step


def _gradient_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager[None]:
    """Under DistributedDataParallel (also through ``torch.compile``), all-reduce gradients only on the batch
    that ends an accumulation (``sync``): ``no_sync`` for the others. Nothing for a plain module."""
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if not sync and callable(no_sync) else contextlib.nullcontext()
