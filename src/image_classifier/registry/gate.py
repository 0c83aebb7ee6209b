"""The accuracy gate: a registered version is evaluated on its data's test split, and the verdict, recorded on
its tag (:mod:`~image_classifier.registry.verdicts`), decides whether it may be promoted."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from image_classifier.registry.store import RegistryError, repo_root
from image_classifier.registry.verdicts import record_check, recorded_check
from image_classifier.registry.versions import ACCURACY, ModelVersion, fetch, resolve
from image_classifier.subprocesses import run_checked


def check(
    reference: str, overrides: list[str] | None = None, *, repo: Path | str = ".", tolerance: float = 0.0
) -> tuple[float, float]:
    """Evaluate the registered bundle on its data's test split (``python -m image_classifier.evaluate``, data from
    the bundle's record unless ``overrides`` name it); the accuracy measured and the one registered. Raises
    when the measured accuracy is below the registered one by more than ``tolerance``."""
    model = resolve(reference, repo=repo)
    registered = model.metrics.get(ACCURACY)
    if registered is None:
        raise RegistryError(f"{model.reference} has no registered {ACCURACY} to check against.")
    overrides = list(overrides or [])
    if not any(item.split("=", 1)[0].lstrip("+") == "data" for item in overrides):
        overrides.insert(0, f"data={model.record.get('data', 'shapes')}")
    with tempfile.TemporaryDirectory(prefix="registry-check-") as scratch:
        bundle = fetch(model, Path(scratch), repo=repo)
        measured = evaluate_accuracy(bundle, Path(scratch) / "evaluate", overrides)
    passed = measured + tolerance >= registered
    result = {"passed": passed, "measured": measured, "registered": registered, "tolerance": tolerance}
    record_check(repo_root(repo), model.reference, result)
    if not passed:
        raise RegistryError(
            f"{model.reference}: accuracy {measured:.4f} on the pinned data is below the registered {registered:.4f}."
        )
    return measured, registered


def evaluate_accuracy(bundle: Path, output_dir: Path, overrides: list[str]) -> float:
    """The test accuracy ``python -m image_classifier.evaluate`` measures for ``bundle``."""
    command = [sys.executable, "-m", "image_classifier.evaluate", f"checkpoint={bundle}", *overrides]
    command += ["logger=none", f"hydra.run.dir={output_dir}", f"paths.output_dir={output_dir}"]
    run_checked(command, "Evaluation failed", error=RegistryError)
    return float(json.loads((output_dir / "metrics.json").read_text())["accuracy"])


def require_passed(root: Path, model: ModelVersion) -> None:
    """Raise unless ``model``'s accuracy check was recorded and passed."""
    result = recorded_check(root, model.reference)
    if result is None:
        raise RegistryError(
            f"{model.reference} was never checked: run `python -m image_classifier.registry check "
            f"{model.reference}` (it records the result) before promoting it."
        )
    if not result.get("passed"):
        raise RegistryError(
            f"{model.reference} failed its accuracy check (accuracy {result.get('measured')} below the registered "
            f"{result.get('registered')}): not promoted."
        )
