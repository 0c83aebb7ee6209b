"""Exact resume: capture and restore everything a run needs to continue as if never stopped.

The state lives in the ``training_state`` field of ``last.pt`` and holds only tensors and
plain Python values, so the bundle still loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist

from image_classifier.checkpoint import Bundle, load_bundle
from image_classifier.errors import CheckpointError
from image_classifier.training.monitor import EarlyStopping, Monitor

log = logging.getLogger(__name__)

LAST_CHECKPOINT = Path("checkpoints") / "last.pt"


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


def capture_rng_all_ranks(loader_generator: torch.Generator | None = None) -> list[dict[str, Any]]:
    """:func:`capture_rng` of every rank, in rank order (one entry outside torchrun). Call it on every rank."""
    state = capture_rng(loader_generator)
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, state)
    return states


def find_resume_checkpoint(resume: str | None, run_dir: Path) -> Path | None:
    """The ``last.pt`` that ``trainer.resume`` names.

    ``null`` starts fresh; ``auto`` continues from ``<run_dir>/checkpoints/last.pt`` when the
    run dir (``hydra.run.dir``) has one, else starts fresh, so re-running the same command
    with a fixed run dir continues an interrupted run; any other value is a path that must exist.
    """
    if resume in (None, "", False):
        return None
    if str(resume) == "auto":
        candidate = run_dir / LAST_CHECKPOINT
        if candidate.is_file():
            return candidate
        log.info("trainer.resume=auto: no %s yet, starting a fresh run", candidate)
        return None
    path = Path(str(resume)).expanduser()
    if path.is_dir():
        path = path / LAST_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"trainer.resume={resume}: no checkpoint at {path} (give a last.pt, a run dir, or auto).")
    return path


def load_resume_bundle(path: Path, model_name: str, classes: list[str]) -> Bundle:
    """Load ``path`` and check that it can continue this run."""
    bundle = load_bundle(path)
    if not bundle.training_state:
        raise CheckpointError(f"{path} holds no training state to resume from (resume from a last.pt).")
    if bundle.model_name != model_name or list(bundle.classes) != list(classes):
        raise CheckpointError(
            f"{path} was trained as {bundle.model_name} on {len(bundle.classes)} classes; "
            f"this run is {model_name} on {len(classes)} classes."
        )
    return bundle


@dataclass
class Progress:
    """Where the epoch loop stands: the next epoch to run, optimizer steps so far, and each epoch's metrics."""

    next_epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


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

    def state_dict(self, progress: Progress, wandb_run_id: str | None, rng: list[dict[str, Any]]) -> dict[str, Any]:
        """The ``training_state`` of ``last.pt``, with ``rng`` from :func:`capture_rng_all_ranks`."""
        return {
            "next_epoch": progress.next_epoch,
            "step": progress.step,
            "monitor": self.monitor.state_dict(),
            "history": progress.history,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "early_stopping": self.early_stopping.state_dict(),
            "rng": rng,
            "wandb_run_id": wandb_run_id,
        }

    def load_state_dict(self, state: dict[str, Any], rank: int = 0) -> Progress:
        """Restore every component and this rank's RNG streams; returns where the loop continues."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            if state["ema"] is None:
                raise CheckpointError("trainer.ema.enabled=true but the checkpoint was trained without EMA.")
            self.ema.load_state_dict(state["ema"])
        self.monitor.load_state_dict(state["monitor"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        rng = state["rng"]
        if rank >= len(rng):
            log.warning("last.pt holds RNG states for %d processes; rank %d starts from rank 0's", len(rng), rank)
        restore_rng(rng[rank] if rank < len(rng) else rng[0], self.loader_generator)
        return Progress(state["next_epoch"], state["step"], list(state["history"]))
