"""``python -m image_classifier.bench``: throughput against the compute ceiling, memory and start-up time.

Each case runs in a fresh process (so its peak RSS is its own) and writes one record to
``reports/bench/bench.json``: ``case``, ``phase``, ``img_size``, ``batch_size``, ``ceiling_img_s``,
``measured_img_s``, ``ratio``, ``peak_rss_mb`` (plus details). Cases: the embedded shapes data
(the quickstart's model and size), the Animals-V2 sample in ``../shared/data`` at 64 and 224 px
(skipped with a message where that folder is absent), 1k vs 10k shapes images for one full
epoch (memory and epoch time against dataset size), and the time from ``invoke train`` to the
first training step. Records of ``python -m image_classifier.bench.serve`` (and of ``bench.slim``, the slim
ONNX server against today's ONNX backend) are appended when that module exists, and those of
:mod:`image_classifier.bench.imports` (importing 2,000 and 20,000 generated photos: photos/s and peak
memory; skip it with ``--no-import``).

Speed never comes at the cost of accuracy: one ``accuracy`` record (:mod:`image_classifier.bench.accuracy`)
trains the same short deterministic run with three seeds through the default pipeline (``data.cache=true``)
and through the plain JPEG path (``data.cache=false``); a mean accuracy more than a point below the JPEG
path's makes the bench exit non-zero (skip it with ``--no-accuracy``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from image_classifier.bench.accuracy import accuracy_plan, accuracy_record, print_accuracy_table
from image_classifier.bench.imports import import_records, print_import_table
from image_classifier.errors import UserError, report_user_errors
from image_classifier.project import project_root

console = Console(width=None if sys.stdout.isatty() else 160)
REPORT_NAME = "bench.json"
FIRST_STEP_MARK = b"loss="
STARTUP_GOAL_S = 2.0
"""The first training step should come at most this long after ``import torch, timm`` would have finished."""
RATIO_GOAL = 0.95
"""Every train and eval case of the default pipeline should reach this fraction of its ceiling."""


@dataclass(frozen=True)
class Case:
    """One measurement: a training or evaluation loop on a dataset at one size."""

    case: str
    phase: str
    overrides: list[str]
    batches: int = 0
    """Batches timed per round; 0 means one full epoch."""
    rounds: int = 2
    split: str = "val"
    epoch: bool = False
    """Report the loop time as ``epoch_s`` (the case runs a whole epoch)."""
    reference: bool = False
    """A path the project does not take by default, shown for contrast: the 0.95 goal does not apply."""


def shapes_overrides(root: Path, per_class: int | None = None) -> list[str]:
    overrides = ["data=shapes", "model=baseline_cnn", f"data.root={root}"]
    if per_class is not None:
        overrides += [f"data.generate.train_per_class={per_class}", "data.generate.val_per_class=10"]
        overrides += ["data.generate.test_per_class=10"]
    return overrides


def animals_overrides(root: Path, size: int, batch: int) -> list[str]:
    return [
        "data=animals_v2",
        "model=convnextv2_atto",
        f"data.root={root}",
        f"data.image_size={size}",
        f"data.batch_size={batch}",
    ]


def plan(data_root: Path, shared: Path | None, quick: bool, image_size: int | None) -> list[Case]:
    """The cases to run; ``quick`` keeps only short shapes cases (for tests and a first look)."""
    if quick:
        tiny = [*shapes_overrides(data_root / "shapes-quick", 20), f"data.image_size={image_size or 32}"]
        return [Case("shapes", "train", tiny, batches=3, rounds=1), Case("shapes", "eval", tiny, rounds=1)]
    shapes = shapes_overrides(data_root / "shapes") + ([f"data.image_size={image_size}"] if image_size else [])
    cases = [
        Case("shapes", "train", shapes, batches=8, rounds=6),
        Case("shapes", "eval", shapes, rounds=8),
        Case(
            "reference: shapes decoding JPEGs every epoch (data.cache=false)",
            "train",
            [*shapes, "data.cache=false"],
            batches=8,
            rounds=4,
            reference=True,
        ),
    ]
    if shared is not None:
        animals = data_root / "animals_v2"
        cases += [
            Case("animals_v2", "train", animals_overrides(animals, 64, 64), batches=4, rounds=6),
            Case("animals_v2", "eval", animals_overrides(animals, 64, 64), rounds=6),
            Case("animals_v2", "train", animals_overrides(animals, 224, 16), batches=6, rounds=4),
            Case("animals_v2", "eval", animals_overrides(animals, 224, 16), batches=6, rounds=4),
        ]
    # one whole epoch each, with the quickstart's CNN at 32 px so that 10k images fit the run
    for label, per_class in (("1k", 100), ("10k", 1000)):
        overrides = [*shapes_overrides(data_root / f"shapes-{label}", per_class), "data.image_size=32"]
        name = f"shapes {label} images, one epoch (32 px)"
        cases.append(Case(name, "train", overrides, rounds=3 if per_class < 1000 else 1, epoch=True))
    return cases


def compose(overrides: list[str]) -> Any:
    """The training config with ``overrides``, as ``python -m image_classifier.train`` composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from image_classifier.config.entry import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose("train", overrides=[*overrides, "logger=none"])


def run_case(case: Case) -> dict[str, Any]:
    """Measure ``case`` in this process (the child side of :func:`measure_in_child`)."""
    from image_classifier.bench.measure import measure

    return measure(compose(case.overrides), case.phase, case.batches, case.rounds, case.split)


def measure_in_child(case: Case, log: Path) -> dict[str, Any]:
    """Run ``case`` in a fresh interpreter and return its record (a failure raises with the log's last line)."""
    command = [sys.executable, "-m", "image_classifier.bench", "--run-case", json.dumps(asdict(case))]
    with open(log, "ab") as handle:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=handle, cwd=project_root(), check=False)
    lines = done.stdout.decode().strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = log.read_text(errors="replace").strip().splitlines()
        raise UserError(f"bench case '{case.case}' ({case.phase}) failed: {tail[-1] if tail else done.returncode}")
    return json.loads(lines[-1])


def prepare_data(case: Case, mode: str = "--prepare") -> None:
    """Generate or import the case's dataset in a separate process, so the case's memory is the loop's alone.

    ``mode`` ``--warm-cache`` also builds the training loaders' caches (see :func:`warm_cache`).
    """
    command = [sys.executable, "-m", "image_classifier.bench", mode, json.dumps(case.overrides)]
    done = subprocess.run(command, capture_output=True, cwd=project_root(), check=False)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"could not prepare data for '{case.case}': {lines[-1] if lines else done.returncode}")


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
    done = subprocess.run(command, capture_output=True, cwd=project_root(), check=False)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise UserError(f"could not prepare Animals-V2 from {source}: {lines[-1] if lines else done.returncode}")


def warm_cache(overrides: list[str]) -> None:
    """Prepare the dataset and build the loaders training builds (so the cache exists before any run is timed)."""
    import torch

    from image_classifier.data.loaders import build_dataloaders, open_dataset
    from image_classifier.model import create_model, eval_data_config, model_kwargs

    cfg = compose(overrides)
    dataset = open_dataset(cfg.data)
    model = create_model(cfg.model.name, num_classes=len(dataset.classes), **model_kwargs(cfg.model))
    data_config = eval_data_config(model, cfg.data)  # as the training run sizes its loaders
    build_dataloaders(cfg.data, dataset, data_config, seed=cfg.trainer.seed, device=torch.device("cpu"))


def import_seconds(modules: str = "torch, timm", timeout: float = 600) -> float | None:
    """Seconds from launching a fresh ``python -c "import torch, timm"`` to the end of its imports."""
    code = f"import time; import {modules}; print(time.time())"
    start = time.time()  # wall clock: the child reads the same clock when its imports are done
    try:
        command = [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=project_root(), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    return round(float(done.stdout.split()[-1]) - start, 2) if done.returncode == 0 else None


def first_step_seconds(overrides: str, run_dir: Path, timeout: float = 600) -> float | None:
    """Seconds from launching ``invoke train`` to its first finished training step (its first loss on the bar)."""
    extra = [*overrides.split(), "logger=none", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"]
    command = [sys.executable, "-m", "invoke", "train", "--", *extra]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=project_root(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    assert process.stderr is not None
    seen = b""
    try:
        while time.perf_counter() - start < timeout:
            chunk = os.read(process.stderr.fileno(), 65536)
            if not chunk:
                return None
            seen = seen[-64:] + chunk
            if FIRST_STEP_MARK in seen:
                return round(time.perf_counter() - start, 2)
        return None
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()


def startup_record(label: str, first_step_s: float | None, import_s: float | None) -> dict[str, Any]:
    """One start-up record: seconds to the first step, to the end of ``import torch, timm``, and between them."""
    after = round(first_step_s - import_s, 2) if first_step_s is not None and import_s is not None else None
    return {
        "case": f"invoke train -> first step ({label})",
        "phase": "train",
        "img_size": None,
        "batch_size": None,
        "ceiling_img_s": None,
        "measured_img_s": None,
        "ratio": None,
        "peak_rss_mb": None,
        "first_step_s": first_step_s,
        "import_torch_timm_s": import_s,
        "first_step_after_import_s": after,
        "first_step_goal_s": STARTUP_GOAL_S,
    }


def startup_records(data_root: Path, scratch: Path) -> list[dict[str, Any]]:
    """Time from ``invoke train`` to the first step: with the data generated and cached, and from nothing.

    Each is measured just after a fresh ``import torch, timm``, whose time is the floor it is read against.
    """
    records: list[dict[str, Any]] = []
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for label, root in (
        ("warm: data generated and cached", data_root / "shapes"),
        ("cold: fresh data root", scratch / "cold"),
    ):
        import_s = import_seconds()
        seconds = first_step_seconds(f"data.root={root}", scratch / f"run-{len(records)}")
        records.append(startup_record(label, seconds, import_s))
    return records


def startup_note(record: dict[str, Any]) -> str:
    """The notes cell of a start-up record: the first step, the ``import torch, timm`` floor, the gap and the goal."""
    note = f"first step after {_fmt(record['first_step_s'], 1)} s"
    after = record.get("first_step_after_import_s")
    if after is None:
        return note
    colour = "green" if after <= STARTUP_GOAL_S else "red"
    return (
        f"{note}, [{colour}]{after:.1f} s[/] after import torch, timm "
        f"({_fmt(record['import_torch_timm_s'], 1)} s; goal <= {STARTUP_GOAL_S:.0f} s)"
    )


def serve_records(scratch: Path) -> list[dict[str, Any]]:
    """Records (phase ``serve``) from ``python -m image_classifier.bench.serve``.

    Each load configuration becomes one record: requests/s (one image each) against the offline
    batched-inference ceiling of the same model, with the mean batch the server ran, its speed-up over
    one request per forward pass, and the model's offline throughput at batch 1 and half the maximum.
    """
    from image_classifier.bench.serve import offline_curve

    report_path = scratch / "bench_serve.json"
    command = [sys.executable, "-m", "image_classifier.bench.serve", "--out", str(report_path)]
    done = subprocess.run(command, cwd=project_root(), check=False)
    if done.returncode != 0 or not report_path.is_file():
        console.print(f"[yellow]bench_serve failed (exit {done.returncode}); serving records left out.[/]")
        return []
    report = json.loads(report_path.read_text())
    records = []
    for result in report.get("results", []):
        ceilings = report["offline_ceilings_images_per_s"][result["backend"]]
        ceiling = ceilings["model"]
        batching = "micro-batching" if result["micro_batching"] else "one per forward"
        records.append(
            {
                "case": f"serve {report['model']} {result['backend']}, {batching}, {result['concurrency']} clients",
                "phase": "serve",
                "img_size": report["input_size"],
                "batch_size": report["max_batch"] if result["micro_batching"] else 1,
                "ceiling_img_s": round(ceiling, 1),
                "measured_img_s": round(result["requests_per_s"], 1),
                "ratio": round(result["requests_per_s"] / ceiling, 3),
                "peak_rss_mb": None,
                "p50_ms": result["p50_ms"],
                "p99_ms": result["p99_ms"],
                "mean_batch": round(result["mean_batch"], 2),
                "speedup_vs_one_per_forward": result["speedup_vs_one_per_forward"],
                "offline_img_s_by_batch": {
                    size: round(value, 1) for size, value in offline_curve(ceilings, report["max_batch"]).items()
                },
            }
        )
    return records


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def scale_summary(records: list[dict[str, Any]]) -> str | None:
    """How epoch time and peak memory grow from the smallest to the largest whole-epoch case."""
    epochs = sorted((r for r in records if r.get("epoch_s")), key=lambda r: r["images"])
    if len(epochs) < 2:
        return None
    small, large = epochs[0], epochs[-1]
    return (
        f"{large['images']:,} vs {small['images']:,} images (x{large['images'] / small['images']:.1f}): "
        f"epoch time x{large['epoch_s'] / small['epoch_s']:.2f}, "
        f"peak RSS {large['peak_rss_mb']:.0f} vs {small['peak_rss_mb']:.0f} MB "
        f"({100 * (large['peak_rss_mb'] / small['peak_rss_mb'] - 1):+.1f} %)"
    )


def print_table(records: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    for column in ("case", "phase", "px", "batch", "ceiling img/s", "measured img/s", "ratio", "peak RSS MB", "notes"):
        table.add_column(column, justify="left" if column in ("case", "phase", "notes") else "right")
    for r in records:
        notes = []
        if r.get("epoch_s") is not None:
            notes.append(f"epoch {r['epoch_s']:.1f} s for {r['images']} images")
        if "first_step_s" in r:
            notes.append(startup_note(r))
        if r.get("workers") is not None:
            notes.append(f"{r['workers']} workers, {r['threads']} threads")
        ratio = r.get("ratio")
        colour = "dim" if r.get("reference") else "green" if ratio is not None and ratio >= RATIO_GOAL else "red"
        ratio_text = "-" if ratio is None else f"[{colour}]{ratio:.3f}[/]"
        table.add_row(
            r["case"], r["phase"], _fmt(r.get("img_size")), _fmt(r.get("batch_size")), _fmt(r.get("ceiling_img_s")),
            _fmt(r.get("measured_img_s")), ratio_text, _fmt(r.get("peak_rss_mb")), "; ".join(notes),
        )  # fmt: skip
    console.print(table)
    for line in (goal_summary(records), scale_summary(records)):
        if line:
            console.print(line)


def goal_summary(records: list[dict[str, Any]]) -> str | None:
    """How many train and eval cases (reference paths aside) reach ``RATIO_GOAL``, and the lowest."""
    scored = [r for r in records if r["phase"] in ("train", "eval") and r.get("ratio") is not None]
    scored = [r for r in scored if not r.get("reference")]
    if not scored:
        return None
    lowest = min(scored, key=lambda r: r["ratio"])
    reached = sum(r["ratio"] >= RATIO_GOAL for r in scored)
    return (
        f"Goal: {reached} of {len(scored)} train/eval cases at >= {RATIO_GOAL} of the ceiling "
        f"(lowest {lowest['ratio']:.3f}: {lowest['case']}, {lowest['phase']}, {lowest['img_size']} px)"
    )


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def run(
    out: Path,
    work: Path,
    shared: Path,
    quick: bool,
    image_size: int | None,
    startup: bool,
    serve: bool = True,
    accuracy: bool = True,
    imports: bool = True,
) -> list[dict[str, Any]]:
    """Run every case, write ``out/bench.json`` and print the table; returns the records."""
    animals_source = shared / "animals-v2"
    have_shared = animals_source.is_dir()
    if not have_shared:
        console.print(f"[yellow]Skipping the real-photo cases: {animals_source} is absent.[/]")
    out.mkdir(parents=True, exist_ok=True)
    data_root = work / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    log = work / "bench.log"
    log.write_text("")
    if have_shared and not quick:
        prepare_animals(animals_source, data_root / "animals_v2")
    records: list[dict[str, Any]] = []
    for case in plan(data_root, shared if have_shared else None, quick, image_size):
        console.print(f"[bold]{case.case}[/] ({case.phase}) ...", end=" ")
        prepare_data(case)
        record = {"case": case.case, "phase": case.phase, **measure_in_child(case, log)}
        if case.reference:
            record["reference"] = True
        if case.epoch:
            record["epoch_s"] = record["loop_s"]
        records.append(record)
        console.print(f"ratio {record['ratio']:.3f}")
    if accuracy:
        records.append(run_accuracy(data_root, have_shared, quick, image_size, work, log))
    if startup and not quick:
        records += startup_records(data_root, work / "scratch")
    if serve and not quick:
        from image_classifier.bench.overload import overload_records
        from image_classifier.bench.slim import suite_records

        records += serve_records(work / "scratch")
        records += overload_records(work / "scratch", project_root())
        records += suite_records(work / "scratch", console)
    if imports and not quick:
        records += import_records(work / "imports")
    meta = {"load_average": load_average(), "cpus": os.cpu_count()}
    (out / REPORT_NAME).write_text(json.dumps([{**r, **meta} for r in records], indent=2))
    title = f"Benchmarks (load average {meta['load_average']} on {meta['cpus']} CPUs) -> {out / REPORT_NAME}"
    print_table([r for r in records if r["phase"] not in ("accuracy", "import")], title)
    print_accuracy_table(console, [r for r in records if r["phase"] == "accuracy"])
    if any(r["phase"] == "import" for r in records):
        print_import_table([r for r in records if r["phase"] == "import"])
    return records


def run_accuracy(
    data_root: Path, have_shared: bool, quick: bool, image_size: int | None, work: Path, log: Path
) -> dict[str, Any]:
    """The accuracy record (see :mod:`image_classifier.bench.accuracy`) on the data this run has."""
    if quick:
        shapes = [*shapes_overrides(data_root / "shapes-quick", 20), f"data.image_size={image_size or 32}"]
    else:
        shapes = shapes_overrides(data_root / "shapes") + ([f"data.image_size={image_size}"] if image_size else [])
    trial = accuracy_plan(shapes, data_root / "animals_v2" if have_shared else None, quick)
    console.print(f"[bold]{trial.case}[/] (accuracy, {len(trial.seeds)} seed(s) per path) ...", end=" ")

    def warm(overrides: list[str]) -> None:
        prepare_data(Case(trial.case, "accuracy", overrides), mode="--warm-cache")

    record = accuracy_record(trial, work, log, warm)
    console.print(f"mean delta {record['accuracy_delta']:+.3f}")
    return record


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.bench", description=__doc__.split("\n")[0])
    root = project_root()
    parser.add_argument("--out", type=Path, default=root / "reports" / "bench", help="where bench.json goes")
    parser.add_argument(
        "--work", type=Path, default=root / "outputs" / "bench", help="datasets, caches, log and scratch runs"
    )
    parser.add_argument("--shared-data", type=Path, default=root.parent / "shared" / "data", help="real-photo samples")
    parser.add_argument("--quick", action="store_true", help="two short shapes cases and a tiny accuracy run only")
    parser.add_argument("--image-size", type=int, default=None, help="shapes image size (default: the config's)")
    parser.add_argument("--no-startup", action="store_true", help="skip the invoke train start-up timing")
    parser.add_argument("--no-serve", action="store_true", help="skip the serving benchmark (bench_serve)")
    parser.add_argument(
        "--no-accuracy", action="store_true", help="skip the accuracy record (cached vs JPEG training runs)"
    )
    parser.add_argument("--no-import", action="store_true", help="skip importing 2,000 and 20,000 generated photos")
    parser.add_argument("--run-case", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    parser.add_argument("--warm-cache", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_case:
        print(json.dumps(run_case(Case(**json.loads(args.run_case)))))
    elif args.prepare:
        from image_classifier.data.loaders import open_dataset

        open_dataset(compose(json.loads(args.prepare)).data)
    elif args.warm_cache:
        warm_cache(json.loads(args.warm_cache))
    else:
        records = run(
            args.out, args.work, args.shared_data, args.quick, args.image_size,
            not args.no_startup, not args.no_serve, not args.no_accuracy, not args.no_import,
        )  # fmt: skip
        if any(r.get("regression") for r in records):
            console.print("error: the default pipeline learns worse than the JPEG path (see the accuracy table).")
            return 1
    return 0
