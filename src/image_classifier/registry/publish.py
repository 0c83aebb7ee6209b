"""Adding to the registry: ``register`` a bundle as a new version, ``promote`` a version to a stage.

``register`` copies a bundle to its artifact's path (``artifacts.yaml``; ``models/NAME.pt`` for a new one),
versions it with DVC (``dvc add``, ``dvc push``), commits the ``.dvc`` file and tags that commit ``NAME@vX.Y.Z``
with the bundle's checksum, metrics and lineage as JSON in the tag message. ``promote`` assigns a stage
(``NAME#STAGE#N``) to a version whose bytes resolve and whose accuracy check passed.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from image_classifier.atomic import atomic_path
from image_classifier.checkpoint import Bundle, load_bundle
from image_classifier.hashing import sha256_file
from image_classifier.registry.gate import require_passed
from image_classifier.registry.store import (
    RegistryError,
    artifact_path,
    commit_paths,
    dvc_md5,
    dvc_repo,
    git,
    gto_errors,
    repo_root,
)
from image_classifier.registry.versions import ACCURACY, ModelVersion, fetch, resolve
from image_classifier.training.tracking import link_model_version

DEFAULT_NAME = "image-classifier"
STAGES = ("staging", "prod")


def register(
    checkpoint: Path | str,
    *,
    repo: Path | str = ".",
    name: str = DEFAULT_NAME,
    version: str | None = None,
    remote: str | None = None,
    push: bool = True,
    push_tag: bool = False,
    wandb: bool = True,
) -> ModelVersion:
    """Record the bundle ``checkpoint`` as a new version of ``name`` (see the module docstring). ``push`` sends
    the bundle to the DVC remote (``remote``, default the repository's), ``push_tag`` the tag to git's origin;
    ``wandb`` also links it to the W&B registry when W&B is online."""
    bundle = load_bundle(checkpoint)
    root = repo_root(repo)
    path = artifact_path(root, name)
    target = root / path
    if Path(checkpoint).resolve() != target.resolve():
        with atomic_path(target) as partial:
            shutil.copyfile(checkpoint, partial)
    with dvc_repo(root) as dvc:
        dvc.add(str(target))
        if push:
            dvc.push(targets=[str(target)], remote=remote)
    md5 = dvc_md5((root / f"{path}.dvc").read_text(), f"{path}.dvc")
    record = version_record(bundle, target, path, md5)
    commit_paths(root, [f"{path}.dvc", str(Path(path).parent / ".gitignore"), "artifacts.yaml"], f"Register {name}")
    message = f"{name}: {record['model']} on {record['data']}, {ACCURACY} {record['metrics'].get(ACCURACY)}"
    with gto_errors():
        import gto.api

        registration = gto.api.register(
            str(root), name, "HEAD", version=normal_version(version), message=f"{message}\n\n{json.dumps(record)}"
        )
        if push_tag:
            git(root, "push", "origin", f"{name}@{registration.version}")
    model = ModelVersion(name, registration.version, git(root, "rev-parse", "HEAD"), path, md5, record)
    if wandb:
        link_model_version(target, name=name, version=model.version, metadata=record, file_name=Path(path).name)
    return model


def normal_version(version: str | None) -> str | None:
    """``1.2.3`` as GTO spells it, ``v1.2.3``; ``None`` lets GTO pick the next version."""
    if not version:
        return None
    return version if version.startswith("v") else f"v{version}"


def version_record(bundle: Bundle, file: Path, path: str, md5: str) -> dict[str, Any]:
    """What a registration tag's message carries: checksums, what the model is, its metrics and lineage."""
    metrics = {key: value for key, value in bundle.metrics.items() if math.isfinite(value)}
    data = bundle.config.get("data", {}) if isinstance(bundle.config, dict) else {}
    return {
        "path": path,
        "md5": md5,
        "sha256": sha256_file(file),
        "size": file.stat().st_size,
        "model": bundle.model_name,
        "data": data.get("name", "unknown") if isinstance(data, dict) else "unknown",
        "classes": list(bundle.classes),
        "input_size": list(bundle.input_size),
        "epoch": bundle.epoch,
        "metrics": metrics,
        "lineage": bundle.lineage,
        "versions": bundle.versions,
    }


def promote(name: str, version: str, stage: str, *, repo: Path | str = ".", push_tag: bool = False) -> ModelVersion:
    """Assign ``stage`` to ``name@version``, once its bundle is known to resolve to the registered bytes."""
    if stage not in STAGES:
        raise RegistryError(f"Stage {stage!r} is not one of {', '.join(STAGES)}.")
    root = repo_root(repo)
    model = resolve(f"{name}@{normal_version(version)}", repo=root)
    with tempfile.TemporaryDirectory(prefix="promote-") as scratch:
        fetch(model, Path(scratch), repo=root)
    require_passed(root, model)
    summary = {"version": model.version, "sha256": model.sha256, "metrics": model.metrics}
    with gto_errors():
        import gto.api

        assignment = gto.api.assign(
            str(root),
            name,
            stage,
            version=model.version,
            message=f"{model.reference} to {stage}\n\n{json.dumps(summary)}",
        )
        if push_tag:
            git(root, "push", "origin", assignment.tag)
    return ModelVersion(**{**asdict(model), "stage": stage})
