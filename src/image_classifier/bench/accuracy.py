"""The bench's accuracy record: the default pipeline must learn as well as decoding JPEGs.

One short, deterministic training run is trained with each of ``SEEDS`` per path: the default pipeline
(``data.cache=true``: the uint8 cache and batched tensor augmentation) and the plain JPEG path
(``data.cache=false``: timm's transform on every decoded JPEG). The record holds each seed's test and
val accuracy, their means and spreads per path, the mean delta (cached - JPEG) and the wall times. A mean
delta more than ``ACCURACY_TOLERANCE`` below zero over at least ``MIN_SEEDS_FOR_VERDICT`` seeds is a
regression, and the bench exits non-zero; with fewer seeds (``--quick``) it is only a warning.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from image_classifier.errors import UserError
from image_classifier.project import project_root
from image_classifier.subprocesses import last_line

ACCURACY_TOLERANCE = 0.01
"""The default pipeline's mean accuracy may fall at most this far below the JPEG path's."""
SEEDS = (42, 43, 44)
MIN_SEEDS_FOR_VERDICT = 3
"""One seed's delta is mostly noise at this size; a mean over three is a verdict."""
ACCURACY_FIXED = ["trainer.deterministic=true", "logger=none", "trainer.device=cpu"]
"""Appended to every accuracy run (with its ``trainer.seed``): deterministic kernels, no tracker, on the CPU."""
JPEG_OVERRIDE = "data.cache=false"
PATHS = ("cached", "jpeg")


@dataclass(frozen=True)
class AccuracyCase:
    """A short training run, trained with each of ``seeds`` as configured (cache on) and with ``data.cache=false``."""

    case: str
    overrides: list[str]
    seeds: tuple[int, ...] = SEEDS
    warm: bool = True
    """Build the cache in a separate process first, so the cached run's wall time is training alone."""


def accuracy_plan(shapes: list[str], animals_root: Path | None, quick: bool) -> AccuracyCase:
    """The case: the tiny ``shapes`` overrides for one seed with ``quick``; else ResNet-18 from scratch on
    Animals-V2 (``animals_root``) where it is present, with the animals_v2 augmentation; else the shapes CNN."""
    if quick:  # the quick train and eval cases have just built this root's caches: no warm-up process
        quick_case = [*shapes, "trainer.max_epochs=1"]
        return AccuracyCase("shapes (quick), cached vs JPEG", quick_case, seeds=SEEDS[:1], warm=False)
    if animals_root is not None:
        recipe = ["model=timm", "model.name=resnet18", "data=animals_v2", f"data.root={animals_root}"]
        recipe += ["data.image_size=64", "data.batch_size=64", "optimizer.opt=sgd", "optimizer.lr=0.05"]
        recipe += ["scheduler.sched=cosine", "trainer.max_epochs=12"]
        return AccuracyCase("animals_v2 resnet18 from scratch, cached vs JPEG", recipe)
    return AccuracyCase("shapes (quickstart CNN), cached vs JPEG", [*shapes, "trainer.max_epochs=3"])


def train_run(overrides: list[str], run_dir: Path, log: Path) -> tuple[dict[str, float], float]:
    """Run ``python -m image_classifier.train`` in ``run_dir``; returns its ``metrics.json`` and its wall seconds."""
    command = [sys.executable, "-m", "image_classifier.train", *overrides, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    with open(log, "ab") as handle:
        done = subprocess.run(command, stdout=handle, stderr=handle, cwd=project_root(), check=False)
    wall_s = time.perf_counter() - start
    metrics_path = run_dir / "metrics.json"
    if done.returncode != 0 or not metrics_path.is_file():
        last = last_line(log.read_text(errors="replace"))
        raise UserError(f"accuracy run ({' '.join(overrides)}) failed (exit {done.returncode}): {last}")
    return json.loads(metrics_path.read_text()), round(wall_s, 2)


def split_key(split: str) -> str:
    return f"{split}/accuracy"


def _spread(values: Sequence[float]) -> float:
    """The sample standard deviation (0 for a single value)."""
    return statistics.stdev(values) if len(values) > 1 else 0.0


def compare_accuracy(runs: dict[str, list[tuple[dict[str, float], float]]]) -> dict[str, Any]:
    """The accuracy fields of a record from each path's runs (``metrics.json`` and wall seconds, one per seed).

    Per path and split: every seed's accuracy, the mean and the spread; the mean delta (cached - JPEG), on the
    test split, or on val where a run has no test split (``delta_split``); the mean wall times and their ratio.
    """
    split = "test" if all(split_key("test") in m for path in PATHS for m, _ in runs[path]) else "val"
    fields: dict[str, Any] = {}
    for path in PATHS:
        for name in ("test", "val"):
            values = [m[split_key(name)] for m, _ in runs[path] if split_key(name) in m]
            fields[f"{path}_{name}_accuracies"] = values
            fields[f"{path}_{name}_accuracy"] = round(statistics.fmean(values), 6) if values else None
            fields[f"{path}_{name}_spread"] = round(_spread(values), 6) if values else None
        fields[f"{path}_wall_s"] = round(statistics.fmean(wall for _, wall in runs[path]), 2)
    delta = round(fields[f"cached_{split}_accuracy"] - fields[f"jpeg_{split}_accuracy"], 6)
    seeds = min(len(runs[path]) for path in PATHS)
    regression = delta < -ACCURACY_TOLERANCE
    return {
        **fields,
        "accuracy_delta": delta,
        "delta_split": split,
        "accuracy_tolerance": ACCURACY_TOLERANCE,
        "within_tolerance": not regression,
        "regression": regression and seeds >= MIN_SEEDS_FOR_VERDICT,
        "wall_ratio": round(fields["cached_wall_s"] / fields["jpeg_wall_s"], 3) if fields["jpeg_wall_s"] else None,
    }


def run_settings(run_dir: Path) -> dict[str, Any]:
    """Model, dataset, image size, batch and epochs from the config a training run saved (``.hydra/config.yaml``)."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    return {
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "img_size": cfg.data.image_size,
        "batch_size": cfg.data.batch_size,
        "epochs": cfg.trainer.max_epochs,
    }


def accuracy_record(case: AccuracyCase, work: Path, log: Path, warm: Callable[[list[str]], None]) -> dict[str, Any]:
    """Train ``case`` with every seed through both paths (``warm`` builds the cache first); one ``accuracy`` record."""
    overrides = [*case.overrides, *ACCURACY_FIXED]
    if case.warm:
        warm(overrides)
    runs: dict[str, list[tuple[dict[str, float], float]]] = {path: [] for path in PATHS}
    with tempfile.TemporaryDirectory(prefix="accuracy-", dir=work) as scratch:
        for seed in case.seeds:
            seeded = [*overrides, f"trainer.seed={seed}"]
            runs["cached"].append(train_run(seeded, Path(scratch) / f"cached-{seed}", log))
            runs["jpeg"].append(train_run([*seeded, JPEG_OVERRIDE], Path(scratch) / f"jpeg-{seed}", log))
        settings = run_settings(Path(scratch) / f"cached-{case.seeds[0]}")
    return {
        "case": case.case,
        "phase": "accuracy",
        **settings,
        "ceiling_img_s": None,
        "measured_img_s": None,
        "ratio": None,
        "peak_rss_mb": None,
        "seeds": list(case.seeds),
        **compare_accuracy(runs),
        "overrides": overrides,
        "jpeg_overrides": [*overrides, JPEG_OVERRIDE],
    }


def accuracy_warning(record: dict[str, Any]) -> str | None:
    """The line for a record whose mean cached accuracy is more than the tolerance below the JPEG path's."""
    if record["within_tolerance"]:
        return None
    split, seeds = record["delta_split"], len(record["seeds"])
    verdict = "accuracy regression" if record["regression"] else f"WARNING: {seeds} seed(s), not a verdict"
    return (
        f"{verdict} in '{record['case']}': the cached pipeline reaches mean {split} accuracy "
        f"{record[f'cached_{split}_accuracy']:.3f} vs {record[f'jpeg_{split}_accuracy']:.3f} on the JPEG path "
        f"(delta {record['accuracy_delta']:+.3f}, more than {record['accuracy_tolerance']} below)"
    )


def _mean_and_spread(record: dict[str, Any], path: str, split: str) -> str:
    mean, spread = record[f"{path}_{split}_accuracy"], record[f"{path}_{split}_spread"]
    return "-" if mean is None else f"{mean:.3f} ± {spread:.3f}"


def print_accuracy_table(console: Console, records: list[dict[str, Any]]) -> None:
    """The ``accuracy`` records: mean ± spread per path, the mean delta and wall times; a line per regression."""
    if not records:
        return
    table = Table(title=f"Accuracy: default pipeline (data.cache=true) vs plain JPEG ({JPEG_OVERRIDE}), same seeds")
    columns = ("case", "seeds", "epochs", "px", "cached test", "JPEG test", "delta", "cached val", "JPEG val")
    for column in (*columns, "cached s", "JPEG s", "wall ratio"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in records:
        colour = "green" if r["within_tolerance"] else "red"
        table.add_row(
            r["case"], str(len(r["seeds"])), str(r["epochs"]), str(r.get("img_size")),
            _mean_and_spread(r, "cached", "test"), _mean_and_spread(r, "jpeg", "test"),
            f"[{colour}]{r['accuracy_delta']:+.3f}[/]", _mean_and_spread(r, "cached", "val"),
            _mean_and_spread(r, "jpeg", "val"), f"{r['cached_wall_s']:.1f}", f"{r['jpeg_wall_s']:.1f}",
            f"{r['wall_ratio']:.3f}" if r["wall_ratio"] is not None else "-",
        )  # fmt: skip
    console.print(table)
    for r in records:
        if (line := accuracy_warning(r)) is not None:
            console.print(f"[bold red]{line}[/]")
