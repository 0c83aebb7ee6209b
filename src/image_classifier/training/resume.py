"""Exact resume: capture and restore everything a run needs to continue as if never stopped.

The state lives in the ``training_state`` field of ``last.pt`` and holds only tensors and
plain Python values, so the bundle still loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist

from image_classifier.checkpoint import Bundle, load_bundle, save_bundle
from image_classifier.errors import CheckpointError
from image_classifier.training.engine import EpochTotals
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


def gather_rank_states(loader_generator: torch.Generator | None, totals: EpochTotals) -> list[dict[str, Any]]:
    """Every rank's RNG streams (:func:`capture_rng`) and running sums of the epoch, in rank order (one entry
    outside torchrun). Call it on every rank."""
    state = {"rng": capture_rng(loader_generator), "totals": asdict(totals)}
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
        """Restore every component; returns where the loop continues, with this rank's sums of the epoch."""
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
        return Progress(state["next_epoch"], state["step"], list(state["history"]), totals)

    def restore_rng(self, state: dict[str, Any], rank: int = 0) -> None:
        """This rank's RNG streams, the training loader's generator among them."""
        rng = state["rng"]
        if rank >= len(rng):
            log.warning("last.pt holds RNG states for %d processes; rank %d starts from rank 0's", len(rng), rank)
        restore_rng(rng[rank] if rank < len(rng) else rng[0], self.loader_generator)


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class CheckpointWriter:
    """Writes bundles in a background thread, in order, from copies taken when they are handed over.

    The training loop waits only for the copy (and for a write still in progress when the next one comes), not for
    serialising and syncing to disk. :meth:`wait` returns once everything handed over is on disk.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def write(self, *bundles: tuple[Path, Bundle]) -> None:
        """Write each ``(path, bundle)`` in turn (atomically, see :func:`save_bundle`) after the ones before."""
        self.wait()
        copies = [(path, _copied_bundle(bundle)) for path, bundle in bundles]
        thread = threading.Thread(target=self._write, args=(copies,), name="checkpoint-writer")
        thread.start()
        self._thread = thread

    def _write(self, bundles: list[tuple[Path, Bundle]]) -> None:
        try:
            for path, bundle in bundles:
                save_bundle(path, bundle)
        except BaseException as error:  # raised in the training thread by the next wait()
            self._error = error

    def wait(self) -> None:
        """Until every bundle handed over is written (a Ctrl-C meanwhile lets it finish); re-raises a write's error."""
        if self._thread is not None:
            try:
                self._thread.join()
            except KeyboardInterrupt:
                self._thread.join()
                raise
            finally:
                self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def _copied_bundle(bundle: Bundle) -> Bundle:
    return Bundle(**{f.name: _copied(getattr(bundle, f.name)) for f in dataclasses.fields(bundle)})


def _copied(value: Any) -> Any:
    """``value`` with every dict, list and tensor copied (tensors onto the CPU): training may change the originals."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copied(item) for item in value)
    return value
