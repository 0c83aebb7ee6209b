"""Each case in a fresh interpreter, so its peak memory is its own: the parent's side (start a child, read
its record) and the child's (``python -m image_classifier.bench --run-case``, ``--prepare``, ``--warm-cache``)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from image_classifier.bench.cases import Case
from image_classifier.errors import UserError
from image_classifier.project import project_root
from image_classifier.subprocesses import failure_reason, run_checked


def compose(overrides: list[str]) -> Any:
    """The training config with ``overrides``, as ``python -m image_classifier.train`` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from image_classifier.config.entry import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose("train", overrides=[*overrides, "logger=none"])


def measure_in_child(case: Case, log: Path) -> dict[str, Any]:
    """Run ``case`` in a fresh interpreter and return its measurement (a failure raises with the log's last line)."""
    command = [sys.executable, "-m", "image_classifier.bench", "--run-case", json.dumps(asdict(case))]
    with open(log, "ab") as handle:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=handle, cwd=project_root(), check=False)
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = failure_reason(done.returncode, log.read_text(errors="replace"))
        raise UserError(f"bench case '{case.case}' ({case.phase}) failed: {tail}")
    return json.loads(lines[-1])


def prepare_data(case: Case, mode: str = "--prepare") -> None:
    """Generate or import the case's dataset in a separate process, so the case's memory is the loop's alone.

    ``mode`` ``--warm-cache`` also builds the training loaders' caches (see :func:`warm_cache`).
    """
    command = [sys.executable, "-m", "image_classifier.bench", mode, json.dumps(case.overrides)]
    run_checked(command, f"could not prepare data for '{case.case}'", cwd=project_root())


def prepare_animals(source: Path, root: Path) -> None:
    """Import the Animals-V2 sample with the project's own importer (a no-op once prepared)."""
    command = [
        sys.executable,
        "-m",
        "image_classifier.data",
        "animals_v2",
        "--source",
        str(source),
        "--root",
        str(root),
    ]
    run_checked(command, f"could not prepare Animals-V2 from {source}", cwd=project_root())


def run_case(case: Case) -> dict[str, Any]:
    """In the child: measure ``case`` in this process (see :func:`image_classifier.bench.measure.measure`)."""
    from image_classifier.bench.measure import measure

    return measure(compose(case.overrides), case.phase, case.batches, case.rounds, case.split)


def prepare_dataset(overrides: list[str]) -> None:
    """In the child: generate (or check) the dataset the config with ``overrides`` names."""
    from image_classifier.data.loaders import open_dataset

    open_dataset(compose(overrides).data)


def warm_cache(overrides: list[str]) -> None:
    """In the child: prepare the dataset and build the loaders training builds (so the cache exists before any
    run is timed)."""
    import torch

    from image_classifier.run_parts import build_run_parts

    build_run_parts(compose(overrides), torch.device("cpu"), weights=False).loaders()
