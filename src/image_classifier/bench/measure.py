"""One benchmark case, measured in this process: the compute ceiling beside the project's own loop.

The ceiling runs bare steps on in-memory tensors; the loop runs ``engine.train_one_epoch`` (or
``engine.predict``) over the DataLoader that ``split_loader`` builds, with the same model, batch,
image size, optimizer and torch threads. The two are interleaved step by step: before handing the
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

from image_classifier.data.loaders import open_dataset, split_loader
from image_classifier.model import create_model, model_data_config, model_kwargs
from image_classifier.runtime import seed_everything
from image_classifier.training.engine import predict, train_one_epoch
from image_classifier.training.optim import build_optimizer, build_scheduler


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


def _build(cfg: DictConfig, classes: int) -> tuple[nn.Module, dict[str, Any]]:
    model = create_model(cfg.model.name, num_classes=classes, pretrained=False, weights=None, **model_kwargs(cfg.model))
    return model, model_data_config(model, cfg.data.image_size, cfg.data.get("crop_pct"))


def measure(cfg: DictConfig, phase: str, batches: int, rounds: int, split: str = "val") -> dict[str, Any]:
    """Ceiling and loop throughput (images/s, from the median step) for ``phase`` (``train`` or ``eval``).

    The loop runs ``batches`` batches per round (0: the whole split) and ``rounds`` rounds; a
    ceiling step runs before each batch.
    """
    seed_everything(cfg.trainer.seed, False)
    dataset = open_dataset(cfg.data)
    model, data_config = _build(cfg, len(dataset.classes))
    device = torch.device("cpu")
    training = phase == "train"
    start = time.perf_counter()
    loader = split_loader(
        cfg.data, dataset, "train" if training else split, data_config, cfg.trainer.seed, training, device=device
    )
    prepare_s = time.perf_counter() - start
    batch = int(loader.batch_size or 1)
    batches = min(batches, len(loader)) if batches > 0 else len(loader)
    size = tuple(data_config["input_size"])
    inputs = torch.randn(batch, *size)
    targets = torch.randint(0, len(dataset.classes), (batch,))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(cfg.trainer.label_smoothing))
    optimizer = build_optimizer(model, cfg.optimizer, cfg.data.batch_size)
    scheduler = build_scheduler(optimizer, cfg.scheduler, num_epochs=1, updates_per_epoch=batches)
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def ceiling_train() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(inputs), targets).backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        optimizer.zero_grad(set_to_none=True)  # the loop's own step starts from no gradients
        return elapsed / batch

    @torch.no_grad()
    def ceiling_eval() -> float:
        start = time.perf_counter()
        model(inputs)
        return (time.perf_counter() - start) / batch

    def loop_train(view: Any) -> None:
        train_one_epoch(
            model, view, loss_fn, optimizer, scheduler, scaler, device=device, precision="32", epoch=0, step=0
        )

    def loop_eval(view: Any) -> None:
        predict(model, view, device=device, precision="32", desc=split)

    ceiling, loop = (ceiling_train, loop_train) if training else (ceiling_eval, loop_eval)
    loop(Timed(loader, 1, ceiling))  # warm-up
    timed = Timed(loader, batches, ceiling)
    for _ in range(rounds):
        loop(timed)
    workers = loader.num_workers
    del loader  # stops the workers, so their peak memory is counted
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
        "img_size": int(size[-1]),
    }
