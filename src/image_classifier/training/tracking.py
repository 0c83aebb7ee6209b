"""Experiment tracking: Weights & Biases (offline unless ``WANDB_MODE`` says otherwise) or nothing; and linking a
registered model version to the W&B registry."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

log = logging.getLogger(__name__)


class Tracker(Protocol):
    """What the training and evaluation loops report to."""

    run_id: str | None

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def summary(self, metrics: dict[str, float]) -> None: ...

    def confusion_matrix(self, matrix: torch.Tensor, classes: list[str], key: str) -> None: ...

    def model_artifact(self, path: Path, name: str, metadata: dict[str, Any]) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


class NullTracker:
    """``logger=none``: tracking off."""

    run_id: str | None = None

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def summary(self, metrics: dict[str, float]) -> None:
        pass

    def confusion_matrix(self, matrix: torch.Tensor, classes: list[str], key: str) -> None:
        pass

    def model_artifact(self, path: Path, name: str, metadata: dict[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbTracker:
    """A W&B run whose files live in the run dir; keys only ever come from the environment."""

    def __init__(self, logger_cfg: Any, run_dir: Path, config: dict[str, Any], run_id: str | None = None) -> None:
        import wandb

        self._wandb = wandb
        run_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=logger_cfg.project,
            entity=logger_cfg.get("entity"),
            group=logger_cfg.get("group"),
            job_type=logger_cfg.get("job_type"),
            tags=list(logger_cfg.get("tags") or []),
            name=logger_cfg.get("run_name"),
            dir=str(run_dir),
            config=config,
            mode=os.environ.get("WANDB_MODE", "offline"),  # type: ignore[arg-type]
            id=run_id,
            resume="allow" if run_id else None,
        )
        self.run_id: str | None = self.run.id
        self.log_model = bool(logger_cfg.get("log_model", True))
        self.run.define_metric("epoch")
        for prefix in ("train", "val", "test"):
            self.run.define_metric(f"{prefix}/*", step_metric="trainer/step")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log({**metrics, "trainer/step": step})

    def summary(self, metrics: dict[str, float]) -> None:
        self.run.summary.update(metrics)

    def confusion_matrix(self, matrix: torch.Tensor, classes: list[str], key: str) -> None:
        rows = [[classes[i], classes[j], int(matrix[i, j])] for i in range(len(classes)) for j in range(len(classes))]
        self.run.log({key: self._wandb.Table(columns=["actual", "predicted", "count"], data=rows)})

    def model_artifact(self, path: Path, name: str, metadata: dict[str, Any]) -> None:
        if not self.log_model:
            return
        artifact = self._wandb.Artifact(name=name, type="model", metadata=metadata)
        artifact.add_file(str(path))
        self.run.log_artifact(artifact, aliases=["best", "latest"])

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def create_tracker(logger_cfg: Any, run_dir: Path, config: dict[str, Any], run_id: str | None = None) -> Tracker:
    if logger_cfg is None or logger_cfg.get("name", "none") == "none":
        return NullTracker()
    if logger_cfg.name == "wandb":
        return WandbTracker(logger_cfg, run_dir, config, run_id=run_id)
    raise ValueError(f"Unknown logger '{logger_cfg.name}'")


@contextmanager
def finishing(tracker: Tracker) -> Iterator[Tracker]:
    """Finish ``tracker`` however the block ends, as failed (exit code 1) when it raises: a run that fails inside
    a Hydra multirun leaves no W&B run open for the next job of the same process to log into."""
    exit_code = 1
    try:
        yield tracker
        exit_code = 0
    finally:
        tracker.finish(exit_code)


def wandb_online() -> bool:
    """W&B is online when a key is in the environment and ``WANDB_MODE`` does not say otherwise."""
    mode = os.environ.get("WANDB_MODE", "online").strip().lower()
    return bool(os.environ.get("WANDB_API_KEY")) and mode not in ("offline", "disabled", "dryrun")


def link_model_version(
    bundle: Path, *, name: str, version: str, metadata: dict[str, Any], file_name: str
) -> str | None:
    """Log ``bundle`` as a W&B model artifact (as ``file_name``) and link it to the W&B registry
    (``WANDB_REGISTRY``, default ``wandb-registry-model/NAME``) under ``version``; the registry linked to, or
    ``None`` (nothing done) when W&B is offline or the link fails (a failure is logged, not raised)."""
    reference = f"{name}@{version}"
    if not wandb_online():
        log.info("W&B is offline (no WANDB_API_KEY, or WANDB_MODE=offline): %s not linked", reference)
        return None
    import wandb

    target = os.environ.get("WANDB_REGISTRY") or f"wandb-registry-model/{name}"
    try:
        with wandb.init(project=os.environ.get("WANDB_PROJECT", "image-classifier"), job_type="register") as run:
            artifact = wandb.Artifact(name.replace("/", "-"), type="model", metadata=metadata)
            artifact.add_file(str(bundle), name=file_name)
            run.log_artifact(artifact, aliases=[version])
            run.link_artifact(artifact, target, aliases=[version])
    except Exception as error:  # the version is registered already: a W&B failure is reported, not raised
        log.warning("W&B: %s not linked to %s: %s", reference, target, str(error).splitlines()[0])
        return None
    return target
