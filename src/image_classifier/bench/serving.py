"""Serving rows (phase ``serve``) of ``invoke bench``: the serving, overload and slim-serving benchmarks,
each run in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from image_classifier.bench.record import BenchRecord
from image_classifier.project import project_root


def serve_record(report: dict[str, Any], result: dict[str, Any]) -> BenchRecord:
    """One load configuration of a ``bench.serve`` report: requests/s (one image each) against the offline
    batched-inference ceiling of the same model, with the mean batch the server ran, its speed-up over one
    request per forward pass, and the model's offline throughput at batch 1 and half the maximum."""
    from image_classifier.bench.ceilings import offline_curve

    ceilings = report["offline_ceilings_images_per_s"][result["backend"]]
    ceiling = ceilings["model"]
    batching = "micro-batching" if result["micro_batching"] else "one per forward"
    curve = offline_curve(ceilings, report["max_batch"])
    return BenchRecord(
        case=f"serve {report['model']} {result['backend']}, {batching}, {result['concurrency']} clients",
        phase="serve",
        img_size=report["input_size"],
        batch_size=report["max_batch"] if result["micro_batching"] else 1,
        ceiling_img_s=round(ceiling, 1),
        measured_img_s=round(result["requests_per_s"], 1),
        ratio=round(result["requests_per_s"] / ceiling, 3),
        details={
            "p50_ms": result["p50_ms"],
            "p99_ms": result["p99_ms"],
            "mean_batch": round(result["mean_batch"], 2),
            "speedup_vs_one_per_forward": result["speedup_vs_one_per_forward"],
            "offline_img_s_by_batch": {size: round(value, 1) for size, value in curve.items()},
        },
    )


def serve_records(scratch: Path, console: Console) -> list[BenchRecord]:
    """The records of ``python -m image_classifier.bench.serve``: one per load configuration."""
    report_path = scratch / "bench_serve.json"
    command = [sys.executable, "-m", "image_classifier.bench.serve", "--out", str(report_path)]
    done = subprocess.run(command, cwd=project_root(), check=False)
    if done.returncode != 0 or not report_path.is_file():
        console.print(f"[yellow]bench_serve failed (exit {done.returncode}); serving records left out.[/]")
        return []
    report = json.loads(report_path.read_text())
    return [serve_record(report, result) for result in report.get("results", [])]


def serving_records(scratch: Path, console: Console) -> list[BenchRecord]:
    """The serving benchmark's records, then the overload's and the slim server's."""
    from image_classifier.bench.overload import overload_records
    from image_classifier.bench.slim import suite_records

    records = serve_records(scratch, console)
    records += [BenchRecord.from_json(row) for row in overload_records(scratch, project_root())]
    records += [BenchRecord.from_json(row) for row in suite_records(scratch, console)]
    return records
