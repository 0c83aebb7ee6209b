"""One benchmark case, measured in this process: the compute ceiling beside the project's own loop.

The ceiling runs bare steps on in-memory tensors; the loop runs ``engine.train_one_epoch`` (or
``engine.predict``) over the DataLoader that ``split_loader`` builds, with the same model, batch,
image size, optimizer and torch threads. Rounds alternate ceiling and loop, and every step is
timed: a loop step is the time between two batch requests (loading one batch and processing it).
Throughputs come from the median step of each, which a burst of load from elsewhere on a shared
machine does not move.
"""

from __future__ import annotations

import itertools
import math
import resource
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from torch import nn
from torch.utils.data import DataLoader

from image_classifier.data.loaders import open_dataset, split_loader
from image_classifier.distributed import optimizer_kwargs
from image_classifier.engine import predict, train_one_epoch
from image_classifier.model import create_model, model_data_config
from image_classifier.runtime import seed_everything
from image_classifier.train import model_kwargs


@dataclass
class Timed:
    """The first ``batches`` batches of a DataLoader, as the engine sees a loader, timing each step.

    ``seconds_per_image`` gets, for every batch, the time from requesting it to requesting the
    next one (loading plus processing), divided by its number of images; ``images`` counts the
    images of the latest pass.
    """

    loader: DataLoader
    batches: int
    seconds_per_image: list[float] = field(default_factory=list)
    images: int = 0

    @property
    def dataset(self) -> Any:
        return self.loader.dataset

    @property
    def sampler(self) -> Any:
        return self.loader.sampler

    def __iter__(self) -> Iterator[Any]:
        self.images = 0
        start = time.perf_counter()
        for batch in itertools.islice(iter(self.loader), self.batches):
            yield batch
            now = time.perf_counter()
            self.images += len(batch[1])
            self.seconds_per_image.append((now - start) / len(batch[1]))
            start = now

    def __len__(self) -> int:
        return min(self.batches, len(self.loader))


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory of this process (or of its largest finished child: a DataLoader worker), in MiB."""
    return round(resource.getrusage(who).ru_maxrss / (1024**2 if sys.platform == "darwin" else 1024), 1)


def _timed(fn: Any, arg: Any) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


def _build(cfg: DictConfig, classes: int) -> tuple[nn.Module, dict[str, Any]]:
    model = create_model(cfg.model.name, num_classes=classes, pretrained=False, weights=None, **model_kwargs(cfg))
    return model, model_data_config(model, cfg.data.image_size, cfg.data.get("crop_pct"))


def measure(
    cfg: DictConfig, phase: str, batches: int, rounds: int, split: str = "val", ceiling_batches: int = 0
) -> dict[str, Any]:
    """Ceiling and loop throughput (images/s, from the median step) for ``phase`` (``train`` or ``eval``).

    The loop runs ``batches`` batches per round (0: the whole split), the ceiling as many steps, or
    ``ceiling_batches`` when given (for long epochs).
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
    optimizer = create_optimizer_v2(model, **optimizer_kwargs(cfg.optimizer, cfg.data.batch_size))
    sched_kwargs = OmegaConf.to_container(cfg.scheduler, resolve=True)
    scheduler, _ = create_scheduler_v2(optimizer, **sched_kwargs, num_epochs=1, updates_per_epoch=batches)  # type: ignore[arg-type]
    scaler = torch.amp.GradScaler("cpu", enabled=False)

    def ceiling_train(steps: int) -> None:
        model.train()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(inputs), targets).backward()
            optimizer.step()

    @torch.no_grad()
    def ceiling_eval(steps: int) -> None:
        model.eval()
        for _ in range(steps):
            model(inputs)

    def loop_train(view: Any) -> None:
        train_one_epoch(
            model, view, loss_fn, optimizer, scheduler, scaler, device=device, precision="32", epoch=0, step=0
        )

    def loop_eval(view: Any) -> None:
        predict(model, view, device=device, precision="32", desc=split)

    ceiling, loop = (ceiling_train, loop_train) if training else (ceiling_eval, loop_eval)
    ceiling(1)
    loop(Timed(loader, 1))
    ceiling_steps: list[float] = []
    timed = Timed(loader, batches)
    loop_s = math.inf
    for _ in range(rounds):
        ceiling_steps += [_timed(ceiling, 1) / batch for _ in range(min(ceiling_batches or batches, batches))]
        loop_s = min(loop_s, _timed(loop, timed))
    workers = loader.num_workers
    del loader  # stops the workers, so their peak memory is counted
    ceiling_img_s = 1 / statistics.median(ceiling_steps)
    measured_img_s = 1 / statistics.median(timed.seconds_per_image)
    return {
        "ceiling_img_s": round(ceiling_img_s, 1),
        "measured_img_s": round(measured_img_s, 1),
        "ratio": round(measured_img_s / ceiling_img_s, 3),
        "peak_rss_mb": peak_rss_mb(),
        "worker_peak_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN) if workers else None,
        "images": timed.images,
        "loop_s": round(loop_s, 2),
        "steps_timed": len(timed.seconds_per_image),
        "prepare_s": round(prepare_s, 2),
        "workers": workers,
        "threads": torch.get_num_threads(),
        "batch_size": batch,
        "img_size": int(size[-1]),
    }
