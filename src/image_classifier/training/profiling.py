"""Where a training step's time goes: torch.profiler over a few steps of a configured run.

:func:`profile_steps` drives the run's own model, loss, optimizer, grad scaler, schedule, Mixup and EMA (as
:mod:`image_classifier.training.engine` does) for ``wait + warmup + active`` steps under ``torch.profiler``
with the CPU activity, and CUDA's when the run is on a GPU. Each step is cut into four labelled phases:
``data_wait`` (the next batch from the loader, on the device), ``forward`` (Mixup, the model and the loss),
``backward`` and ``optimizer`` (clipping, the optimizer and schedule steps, the EMA update). Only the active
steps are recorded; the trace (``*.pt.trace.json``) opens in TensorBoard's profiler plugin and in Perfetto.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.autograd.profiler_util import FunctionEventAvg
from torch.profiler import ProfilerActivity, profile, record_function, schedule, tensorboard_trace_handler
from torch.utils.data import DataLoader

from image_classifier.prediction import autocast

if TYPE_CHECKING:
    from image_classifier.training.recipe import TrainingRun

PHASES = ("data_wait", "forward", "backward", "optimizer")


@dataclass
class StepProfile:
    """What a profile found: the active steps' mean time per phase, the operator table and the trace files."""

    steps: int
    device: str
    phase_ms: dict[str, float]
    operators: str
    sort_by: str
    traces: list[Path] = field(default_factory=list)

    @property
    def step_ms(self) -> float:
        return sum(self.phase_ms.values())

    def split_table(self) -> str:
        """The mean step time across the phases, as a small text table."""
        rows = [f"{'phase':<10} {'ms/step':>9} {'share':>7}"]
        for phase, ms in self.phase_ms.items():
            rows.append(f"{phase:<10} {ms:>9.1f} {ms / max(self.step_ms, 1e-9):>7.1%}")
        rows.append(f"{'step':<10} {self.step_ms:>9.1f} {1:>7.1%}")
        return "\n".join(rows)


class _PhaseClock:
    """Wall time per phase over the recorded steps; on CUDA each phase ends with a synchronize, so the time of a
    phase is its kernels' time and not only the time to queue them."""

    def __init__(self, device: torch.device) -> None:
        self.sync = torch.cuda.synchronize if device.type == "cuda" else None
        self.totals = dict.fromkeys(PHASES, 0.0)
        self.recording = False

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        with record_function(name):
            yield
            if self.sync is not None:
                self.sync()
        if self.recording:
            self.totals[name] += time.perf_counter() - start


def _endless(loader: DataLoader, device: torch.device, channels_last: bool) -> Iterator[tuple[torch.Tensor, ...]]:
    """The loader's batches on ``device``, epoch after epoch (a tiny dataset has fewer batches than the profile)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    while True:
        for images, targets in loader:
            yield images.to(device, non_blocking=True, memory_format=memory_format), targets.to(device)


def _step(run: TrainingRun, batches: Iterator[tuple[torch.Tensor, ...]], clock: _PhaseClock, step: int) -> None:
    """One training step of ``run``, its phases labelled and timed."""
    model, optimizer, scaler = run.train_model, run.optimizer, run.scaler
    with clock.phase("data_wait"):
        images, targets = next(batches)
    with clock.phase("forward"):
        inputs, loss_targets = run.mixup(images, targets) if run.mixup is not None else (images, targets)
        with autocast(run.device, run.precision):
            loss = run.loss_fn(model(inputs), loss_targets)
    with clock.phase("backward"):
        scaler.scale(loss).backward()
    with clock.phase("optimizer"):
        if run.cfg.trainer.clip_grad_norm:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), run.cfg.trainer.clip_grad_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        run.scheduler.step_update(num_updates=step + 1)  # type: ignore[attr-defined]
        if run.ema is not None:
            run.ema.update(run.model, step=step + 1)


def profile_steps(
    run: TrainingRun, trace_dir: Path, *, active: int, warmup: int = 2, wait: int = 1, top: int = 15
) -> StepProfile:
    """Profile ``active`` training steps of a set-up ``run`` after ``wait`` untraced and ``warmup`` traced-but-
    discarded steps; writes the trace into ``trace_dir``."""
    device = run.device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    clock = _PhaseClock(device)
    batches = _endless(run.data.loaders["train"], device, run.cfg.trainer.channels_last)
    run.train_model.train()
    run.optimizer.zero_grad(set_to_none=True)
    trace_dir.mkdir(parents=True, exist_ok=True)
    with profile(
        activities=activities,
        schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(trace_dir)),
        record_shapes=True,
        with_stack=False,
    ) as profiler:
        for step in range(wait + warmup + active):
            clock.recording = step >= wait + warmup
            with record_function(f"step {step}"):
                _step(run, batches, clock, step)
            profiler.step()
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = top_operators(profiler.key_averages(), sort_by, top, active)
    phase_ms = {name: 1000 * total / active for name, total in clock.totals.items()}
    return StepProfile(active, str(device), phase_ms, table, sort_by, sorted(trace_dir.glob("*.pt.trace.json")))


def top_operators(events: list[FunctionEventAvg], sort_by: str, top: int, steps: int) -> str:
    """The ``top`` operators by self time (``sort_by``), without this module's phase and step labels: name, calls
    per step, self time per step and its share of all operators' self time."""
    labels = ("step ", "ProfilerStep#")
    operators = [e for e in events if e.key and e.key not in PHASES and not e.key.startswith(labels)]
    total = sum(getattr(e, sort_by) for e in operators) or 1.0
    operators.sort(key=lambda e: getattr(e, sort_by), reverse=True)
    rows = [f"{'operator':<48} {'calls/step':>10} {'self ms/step':>13} {'share':>7}"]
    for event in operators[:top]:
        self_us = getattr(event, sort_by)
        key = str(event.key)
        name = key if len(key) <= 48 else key[:45] + "..."
        rows.append(f"{name:<48} {event.count / steps:>10.1f} {self_us / 1000 / steps:>13.2f} {self_us / total:>7.1%}")
    return "\n".join(rows)
