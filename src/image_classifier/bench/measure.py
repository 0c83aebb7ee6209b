"""One benchmark case, measured in this process: the compute ceiling beside the project's own loop.

The ceiling runs bare steps on in-memory tensors; the loop runs ``engine.train_one_epoch`` (or
``prediction.predict``) over the DataLoader that :mod:`image_classifier.run_parts` builds, with the same model,
batch, image size, optimizer and torch threads. The two are interleaved step by step: before handing the
loop a batch, one ceiling step runs (and its time is taken out of the loop's). A loop step is the
time between two batch requests: loading a batch and processing it. Throughputs come from the
median step of each, so bursts of load from elsewhere on a shared machine fall on both alike and
move neither.
"""

from __future__ import annotations

import itertools
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from image_classifier.optim import build_optimizer, build_scheduler
from image_classifier.prediction import predict
from image_classifier.run_parts import build_run_parts
from image_classifier.runtime import seed_everything
from image_classifier.training.engine import train_one_epoch


@dataclass
class Timed:
    """The first ``batches`` batches of a DataLoader, as the engine sees a loader, with every step timed.

    Before each batch is handed over, ``ceiling`` runs one bare step and returns its seconds per
    image. ``loop_seconds_per_image`` gets, for each batch, the time from requesting
    it to requesting the next one (loading plus processing, ceiling steps left out) over its
    number of images; ``pass_seconds`` the time of each whole pass, ceiling steps left out.
    """

    loader: DataLoader
    batches: int
    ceiling: Callable[[], float]
    loop_seconds_per_image: list[float] = field(default_factory=list)
    ceiling_seconds_per_image: list[float] = field(default_factory=list)
    pass_seconds: list[float] = field(default_factory=list)
    images: int = 0

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    @property
    def sampler(self) -> Any:
        return self.loader.sampler

    def __iter__(self) -> Iterator[Any]:
        self.images, paused = 0, 0.0
        begin = start = time.perf_counter()
        for batch in itertools.islice(iter(self.loader), self.batches):
            pause_start = time.perf_counter()
            self.ceiling_seconds_per_image.append(self.ceiling())
            pause = time.perf_counter() - pause_start
            start, paused = start + pause, paused + pause
            yield batch
            now = time.perf_counter()
            self.images += len(batch[1])
            self.loop_seconds_per_image.append((now - start) / len(batch[1]))
            start = now
        self.pass_seconds.append(time.perf_counter() - begin - paused)

    def __len__(self) -> int:
        return min(self.batches, len(self.loader))


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory of this process (or of its largest finished child: a DataLoader worker), in MiB."""
    return round(resource.getrusage(who).ru_maxrss / (1024**2 if sys.platform == "darwin" else 1024), 1)


Steps = tuple[Callable[[], float], Callable[[Any], None]]
"""A phase's bare ceiling step (returning its seconds per image) and its loop over a loader (or a :class:`Timed`)."""


def _train_steps(cfg: DictConfig, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, batches: int) -> Steps:
    """Training: SGD steps of the run's loss and optimizer on ``inputs``, beside ``engine.train_one_epoch``."""
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(cfg.trainer.label_smoothing))
    optimizer = build_optimizer(model, cfg.optimizer, cfg.data.batch_size)
    scheduler = build_scheduler(optimizer, cfg.scheduler, num_epochs=1, updates_per_epoch=batches)
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def ceiling() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), targets).backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        optimizer.zero_grad(set_to_none=True)  # the loop's own step starts from no gradients
        return elapsed / len(inputs)

    def loop(view: Any) -> None:
        device = torch.device("cpu")
        train_one_epoch(
            model, view, loss_fn, optimizer, scheduler, scaler, device=device, precision="32", epoch=0, step=0
        )

    return ceiling, loop


def _eval_steps(model: nn.Module, inputs: torch.Tensor, split: str) -> Steps:
    """Evaluation: forward passes on ``inputs``, beside ``predict``."""

    @torch.no_grad()
    def ceiling() -> float:
        start = time.perf_counter()
        model(inputs)
        return (time.perf_counter() - start) / len(inputs)

    def loop(view: Any) -> None:
        predict(model, view, device=torch.device("cpu"), precision="32", desc=split)

    return ceiling, loop


def measure(cfg: DictConfig, phase: str, batches: int, rounds: int, split: str = "val") -> dict[str, Any]:
    """Ceiling and loop throughput (images/s, from the median step) for ``phase`` (``train`` or ``eval``).

    The loop runs ``batches`` batches per round (0: the whole split) and ``rounds`` rounds; a
    ceiling step runs before each batch. The model, its data configs and the loader are built as training
    builds them: training at ``data.image_size``, evaluation at the size training evaluates at.
    """
    seed_everything(cfg.trainer.seed, False)
    parts = build_run_parts(cfg, torch.device("cpu"), weights=False)  # a fresh model: no weights are loaded
    training = phase == "train"
    start = time.perf_counter()
    loader = parts.loader("train" if training else split, training)
    prepare_s = time.perf_counter() - start
    batch = int(loader.batch_size or 1)
    batches = min(batches, len(loader)) if batches > 0 else len(loader)
    size = tuple((parts.data_configs.train if training else parts.data_configs.eval)["input_size"])
    inputs = torch.randn(batch, *size)
    if training:
        targets = torch.randint(0, len(parts.classes), (batch,))
        ceiling, loop = _train_steps(cfg, parts.model, inputs, targets, batches)
    else:
        ceiling, loop = _eval_steps(parts.model, inputs, split)
    loop(Timed(loader, 1, ceiling))  # warm-up
    timed = Timed(loader, batches, ceiling)
    for _ in range(rounds):
        loop(timed)
    workers = loader.num_workers
    del loader  # stops the workers, so their peak memory is counted
    return _record(timed, workers, prepare_s, batch, int(size[-1]))


def _record(timed: Timed, workers: int, prepare_s: float, batch: int, image_size: int) -> dict[str, Any]:
    """The case's record from its timed steps."""
    ceiling_img_s = 1 / statistics.median(timed.ceiling_seconds_per_image)
    measured_img_s = 1 / statistics.median(timed.loop_seconds_per_image)
    return {
        "ceiling_img_s": round(ceiling_img_s, 1),
        "measured_img_s": round(measured_img_s, 1),
        "ratio": round(measured_img_s / ceiling_img_s, 3),
        "peak_rss_mb": peak_rss_mb(),
        "worker_peak_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN) if workers else None,
        "images": timed.images,
        "loop_s": round(min(timed.pass_seconds), 2),
        "steps_timed": len(timed.loop_seconds_per_image),
        "prepare_s": round(prepare_s, 2),
        "workers": workers,
        "threads": torch.get_num_threads(),
        "batch_size": batch,
        "img_size": image_size,
    }
