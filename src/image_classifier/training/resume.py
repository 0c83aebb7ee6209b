"""Exact resume: capture and restore everything a run needs to continue as if never stopped.

The state lives in the ``training_state`` field of ``last.pt`` and holds only tensors and
plain Python values, so the bundle still loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist

from image_classifier.errors import CheckpointError
from image_classifier.training.engine import EpochTotals
from image_classifier.training.monitor import EarlyStopping, Monitor

log = logging.getLogger(__name__)


def capture_rng(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Python, numpy, torch (CPU and every CUDA device) and DataLoader generator states."""
    version, mt_state, gauss_next = random.getstate()
    numpy_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    _, keys, pos, has_gauss, cached_gaussian = numpy_state
    return {
        "python": {"version": version, "state": list(mt_state), "gauss_next": gauss_next},
        "numpy": {"keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(cached_gaussian)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": loader_generator.get_state() if loader_generator is not None else None,
    }


def restore_rng(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Undo :func:`capture_rng`: every generator continues from where it was captured."""
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    numpy = state["numpy"]
    keys = np.asarray(numpy["keys"], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, numpy["pos"], numpy["has_gauss"], numpy["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and state["loader"] is not None:
        loader_generator.set_state(state["loader"])


def gather_rank_states(loader_generator: torch.Generator | None, totals: EpochTotals) -> list[dict[str, Any]]:
    """Every rank's RNG streams (:func:`capture_rng`) and running sums of the epoch, in rank order (one entry
    outside torchrun). Call it on every rank."""
    state = {"rng": capture_rng(loader_generator), "totals": asdict(totals)}
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


@dataclass
class Progress:
    """Where the loop stands: the next epoch to run (or the one in progress), optimizer steps so far, each
    epoch's metrics, and this rank's batches and running sums of the epoch in progress."""

    next_epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    epoch_totals: EpochTotals = field(default_factory=EpochTotals)

    @property
    def batch(self) -> int:
        """Batches of ``next_epoch`` done (0 between epochs)."""
        return self.epoch_totals.batches


@dataclass
class Resumable:
    """Everything with state that a resumed run must restore, beside the model weights."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ema: torch.nn.Module | None
    monitor: Monitor
    early_stopping: EarlyStopping
    loader_generator: torch.Generator | None

    def state_dict(self, progress: Progress, wandb_run_id: str | None, ranks: list[dict[str, Any]]) -> dict[str, Any]:
        """The ``training_state`` of ``last.pt``, with ``ranks`` from :func:`gather_rank_states`."""
        return {
            "next_epoch": progress.next_epoch,
            "batch": progress.batch,
            "step": progress.step,
            "monitor": self.monitor.state_dict(),
            "history": progress.history,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "early_stopping": self.early_stopping.state_dict(),
            "rng": [rank["rng"] for rank in ranks],
            "epoch_totals": [rank["totals"] for rank in ranks],
            "wandb_run_id": wandb_run_id,
        }

    def load_state_dict(self, state: dict[str, Any], rank: int = 0) -> Progress:
        """Restore every component, then this rank's RNG streams (the training loader's generator among them);
        returns where the loop continues, with this rank's sums of the epoch. Call it right before the first batch,
        so that nothing set up in between draws from the restored streams."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state["ema"] is None:
                raise CheckpointError("trainer.ema.enabled=true but the checkpoint was trained without EMA.")
            self.ema.load_state_dict(state["ema"])
        self.monitor.load_state_dict(state["monitor"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        batch, ranks = int(state.get("batch", 0)), state.get("epoch_totals") or []
        if batch and len(ranks) != _world_size():
            log.warning(
                "last.pt was written by %d processes, this run has %d: epoch %d continues at batch %d "
                "with other shards (not an exact resume)", len(ranks), _world_size(), state["next_epoch"], batch
            )  # fmt: skip
        totals = EpochTotals(**ranks[rank]) if batch and rank < len(ranks) else EpochTotals(batches=batch)
        rng = state["rng"]
        if rank >= len(rng):
            log.warning("last.pt holds RNG states for %d processes; rank %d starts from rank 0's", len(rng), rank)
        restore_rng(rng[rank] if rank < len(rng) else rng[0], self.loader_generator)
        return Progress(state["next_epoch"], state["step"], list(state["history"]), totals)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
