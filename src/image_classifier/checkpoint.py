"""Self-describing checkpoint bundles, written atomically and loaded safely.

A bundle holds the weights and everything needed to use them without config files:
model name and kwargs, ordered class names, input size, mean/std, the resolved config,
lineage (git commit, data fingerprint), metrics and library versions. Training bundles
(``last.pt``) also carry the state needed to resume.
"""

from __future__ import annotations

import os
import pickle
import platform
import subprocess
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from image_classifier.architecture import describe_refusal, refused_kwargs
from image_classifier.atomic import atomic_path
from image_classifier.errors import CheckpointError, ConfigError
from image_classifier.model import check_model_name, create_model

BUNDLE_FORMAT = 1


@dataclass
class Bundle:
    """A loaded checkpoint bundle."""

    state_dict: dict[str, torch.Tensor]
    model_name: str
    model_kwargs: dict[str, Any]
    classes: list[str]
    data_config: dict[str, Any]
    config: dict[str, Any]
    lineage: dict[str, Any]
    metrics: dict[str, float]
    versions: dict[str, str]
    epoch: int
    training_state: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.data_config["input_size"])  # type: ignore[return-value]

    def build_model(self) -> nn.Module:
        """The model with the bundle's weights, in eval mode; a bundle whose model kwargs could fetch or read
        anything (see :mod:`image_classifier.architecture`) is refused first."""
        check_loadable(self.model_name, self.model_kwargs, "the bundle")
        model = create_model(self.model_name, num_classes=len(self.classes), **self.model_kwargs)
        model.load_state_dict(self.state_dict)
        return model.eval()


def git_commit(cwd: Path | None = None) -> str:
    """``HEAD``'s commit, suffixed ``-dirty`` when the tree has changes; ``unknown`` outside git."""
    try:
        run = lambda *args: subprocess.run(  # noqa: E731
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        return commit + ("-dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "timm", "image-classifier"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def save_bundle(path: Path, bundle: Bundle) -> Path:
    """Write ``bundle`` to ``path`` via a temporary file and a rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": BUNDLE_FORMAT,
        "state_dict": {k: v.detach().cpu() for k, v in bundle.state_dict.items()},
        "model_name": bundle.model_name,
        "model_kwargs": _jsonable(bundle.model_kwargs),
        "classes": list(bundle.classes),
        "data_config": _jsonable(bundle.data_config),
        "config": _jsonable(bundle.config),
        "lineage": _jsonable(bundle.lineage),
        "metrics": {k: float(v) for k, v in bundle.metrics.items()},
        "versions": {k: str(v) for k, v in bundle.versions.items()},
        "epoch": bundle.epoch,
        "training_state": bundle.training_state,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return path


def load_bundle(path: Path | str, map_location: str | torch.device = "cpu") -> Bundle:
    """Load a bundle with ``weights_only=True``; a clear error when it is missing or not a bundle."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a corrupt file or one that is no torch file
        reason = "not a torch checkpoint" if isinstance(error, pickle.UnpicklingError) else str(error).splitlines()[0]
        raise CheckpointError(f"Cannot read checkpoint {path}: {reason} (give a best.pt or last.pt bundle).") from None
    if not isinstance(payload, dict) or payload.get("format") != BUNDLE_FORMAT:
        raise CheckpointError(f"{path} is not an image-classifier bundle (format {BUNDLE_FORMAT}).")
    payload.pop("format")
    check_loadable(payload.get("model_name"), payload.get("model_kwargs"), str(path))
    return Bundle(**payload)


def check_loadable(model_name: Any, model_kwargs: Any, source: str) -> None:
    """A :class:`CheckpointError` unless the model is one the project builds and its kwargs only shape its
    architecture: no ``pretrained``, ``pretrained_cfg*``, ``checkpoint_path``, nothing naming a file or URL."""
    try:
        check_model_name(str(model_name))
    except ConfigError as error:
        raise CheckpointError(f"Refusing {source}: {error}") from None
    reasons = refused_kwargs(model_kwargs)
    if reasons:
        raise CheckpointError(f"Refusing {source}: {describe_refusal(reasons)}.")
