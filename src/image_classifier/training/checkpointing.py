"""A run's checkpoints: ``last.pt`` and ``best.pt`` in its ``checkpoints/``, and the ``last.pt`` a run resumes from.

:class:`CheckpointManager` owns the directory: after every epoch it writes ``best.pt`` when the monitored metric
improved, then ``last.pt``; inside an epoch, ``last.pt`` every ``trainer.checkpoint_every_n_steps`` optimizer steps.
Bundles are written in a background thread, from copies taken when they are handed over, each atomically (see
:func:`~image_classifier.checkpoint.save_bundle`): a crash leaves the previous file. Only the job's main process
writes; every process reads ``best.pt`` as the main one read it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from image_classifier import distributed as dist
from image_classifier.checkpoint import Bundle, load_bundle, save_bundle
from image_classifier.errors import CheckpointError
from image_classifier.training.monitor import Monitor

log = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"
LAST_CHECKPOINT = Path("checkpoints") / LAST
"""Where a run dir keeps the ``last.pt`` that ``trainer.resume`` continues from."""

BundleFactory = Callable[[], Bundle]
"""Builds a bundle from the run's state at the time of the call (called on every process)."""


@dataclass(frozen=True)
class ResumePoint:
    """The ``last.pt`` a run continues from, loaded and checked."""

    path: Path
    bundle: Bundle

    @property
    def training_state(self) -> dict[str, Any]:
        return self.bundle.training_state


class CheckpointManager:
    """``last.pt`` and ``best.pt`` in ``directory`` (a run dir's ``checkpoints/``), ``best.pt`` following ``monitor``.

    ``every_n_steps`` writes ``last.pt`` inside an epoch too. ``writes`` is false on every process but the main one.
    """

    def __init__(
        self, directory: Path, monitor: Monitor, *, every_n_steps: int | None = None, writes: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.monitor = monitor
        self.every_n_steps = every_n_steps
        self.writes = writes
        self._writer = CheckpointWriter()

    @property
    def last_path(self) -> Path:
        return self.directory / LAST

    @property
    def best_path(self) -> Path:
        return self.directory / BEST

    # --- resuming -----------------------------------------------------------------------------------

    def resume_path(self, resume: str | None) -> Path | None:
        """The ``last.pt`` that ``trainer.resume`` names.

        ``null`` starts fresh; ``auto`` continues from this run's ``last.pt`` when there is one, else starts
        fresh, so re-running the same command with a fixed run dir continues an interrupted run; any other value
        is a ``last.pt``, or a run dir holding one, that must exist.
        """
        if resume in (None, "", False):
            return None
        if str(resume) == "auto":
            if self.last_path.is_file():
                return self.last_path
            log.info("trainer.resume=auto: no %s yet, starting a fresh run", self.last_path)
            return None
        path = Path(str(resume)).expanduser()
        if path.is_dir():
            path = path / LAST_CHECKPOINT
        if not path.is_file():
            raise CheckpointError(
                f"trainer.resume={resume}: no checkpoint at {path} (give a last.pt, a run dir, or auto)."
            )
        return path

    def resume_point(self, resume: str | None, model_name: str, classes: list[str]) -> ResumePoint | None:
        """What ``trainer.resume`` continues from (see :meth:`resume_path`), checked to fit a run of
        ``model_name`` on ``classes``; None for a fresh run."""
        path = self.resume_path(resume)
        if path is None:
            return None
        bundle = load_bundle(path)
        if not bundle.training_state:
            raise CheckpointError(f"{path} holds no training state to resume from (resume from a last.pt).")
        if bundle.model_name != model_name or list(bundle.classes) != list(classes):
            raise CheckpointError(
                f"{path} was trained as {bundle.model_name} on {len(bundle.classes)} classes; "
                f"this run is {model_name} on {len(classes)} classes."
            )
        return ResumePoint(path, bundle)

    # --- saving -------------------------------------------------------------------------------------

    def save(self, epoch: int, metrics: dict[str, float], last: BundleFactory, best: BundleFactory) -> bool:
        """After ``epoch``: ``best.pt`` from ``best()`` when ``metrics`` beat the monitor's best, then ``last.pt``
        from ``last()`` (so an epoch's ``last.pt`` has its ``best.pt``), in the background. True when it improved.

        ``last()`` is called after the monitor took the epoch in, so the state it captures has it.
        """
        improved = self.monitor.update(metrics[self.monitor.name], epoch)
        bundles = [(self.best_path, best())] if improved else []
        bundles.append((self.last_path, last()))
        if self.writes:
            self._writer.write(*bundles)
        return improved

    def save_within_epoch(self, step: int, batch: int, batches: int, last: BundleFactory) -> bool:
        """``last.pt`` from ``last()`` after optimizer step ``step`` (batch ``batch`` of ``batches``) when
        ``every_n_steps`` says so; not after an epoch's last batch, which :meth:`save` follows. True when saved."""
        every = self.every_n_steps
        if not (every and step % every == 0 and batch < batches):
            return False
        bundle = last()
        if self.writes:
            self._writer.write((self.last_path, bundle))
        return True

    def wait(self) -> None:
        """Until every bundle handed over is on disk; re-raises a failed write's error."""
        self._writer.wait()

    # --- the best weights ---------------------------------------------------------------------------

    def load_best(self) -> Bundle:
        """``best.pt``, once every write is done, as the main process reads it (on every process)."""
        self.wait()
        return dist.broadcast_object(load_bundle(self.best_path) if self.writes else None)

    def replace_best(self, bundle: Bundle) -> None:
        """Write ``bundle`` as ``best.pt`` now (the same weights with more metrics, after the test)."""
        self.wait()
        if self.writes:
            save_bundle(self.best_path, bundle)


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
