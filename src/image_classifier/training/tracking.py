"""Experiment tracking: Weights & Biases (offline unless ``WANDB_MODE`` says otherwise) or nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch


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
