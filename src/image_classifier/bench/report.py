"""Benchmark reports: ``bench.json``, the table of records against their ceilings, and its summary lines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from image_classifier.atomic import write_text_atomic
from image_classifier.bench.record import BenchRecord
from image_classifier.bench.startup import STARTUP_GOAL_S

REPORT_NAME = "bench.json"
RATIO_GOAL = 0.95
"""Every train and eval case of the default pipeline should reach this fraction of its ceiling."""
TABLE_COLUMNS = ("case", "phase", "px", "batch", "ceiling img/s", "measured img/s", "ratio", "peak RSS MB", "notes")


def save_report(report: dict[str, Any], out: Path, console: Console) -> None:
    """Write a benchmark's JSON report to ``out`` (atomically, parents made) and say where."""
    write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    console.print(f"Wrote {out}")


def machine() -> dict[str, Any]:
    """The load average and CPU count every row of ``bench.json`` carries."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {"load_average": load, "cpus": os.cpu_count()}


def write_records(out: Path, records: list[BenchRecord], meta: dict[str, Any]) -> Path:
    """``out/bench.json``: every record's row, with ``meta``."""
    path = out / REPORT_NAME
    path.write_text(json.dumps([{**record.to_json(), **meta} for record in records], indent=2))
    return path


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else str(value)


def startup_note(record: BenchRecord) -> str:
    """The notes cell of a start-up record: the first step, the ``import torch, timm`` floor, the gap and the goal."""
    details = record.details
    note = f"first step after {_fmt(details['first_step_s'], 1)} s"
    after = details.get("first_step_after_import_s")
    if after is None:
        return note
    colour = "green" if after <= STARTUP_GOAL_S else "red"
    return (
        f"{note}, [{colour}]{after:.1f} s[/] after import torch, timm "
        f"({_fmt(details['import_torch_timm_s'], 1)} s; goal <= {STARTUP_GOAL_S:.0f} s)"
    )


def scale_summary(records: list[BenchRecord]) -> str | None:
    """How epoch time and peak memory grow from the smallest to the largest whole-epoch case."""
    epochs = sorted(
        (r.details["images"], r.details["epoch_s"], r.peak_rss_mb)
        for r in records
        if r.details.get("epoch_s") and r.peak_rss_mb is not None
    )
    if len(epochs) < 2:
        return None
    (small, small_s, small_mb), (large, large_s, large_mb) = epochs[0], epochs[-1]
    return (
        f"{large:,} vs {small:,} images (x{large / small:.1f}): epoch time x{large_s / small_s:.2f}, "
        f"peak RSS {large_mb:.0f} vs {small_mb:.0f} MB ({100 * (large_mb / small_mb - 1):+.1f} %)"
    )


def goal_summary(records: list[BenchRecord]) -> str | None:
    """How many train and eval cases (reference paths aside) reach ``RATIO_GOAL``, and the lowest."""
    scored = [(r.ratio, r) for r in records if r.phase in ("train", "eval") and r.ratio is not None and not r.reference]
    if not scored:
        return None
    ratio, lowest = min(scored, key=lambda pair: pair[0])
    reached = sum(value >= RATIO_GOAL for value, _ in scored)
    return (
        f"Goal: {reached} of {len(scored)} train/eval cases at >= {RATIO_GOAL} of the ceiling "
        f"(lowest {ratio:.3f}: {lowest.case}, {lowest.phase}, {lowest.img_size} px)"
    )


def notes(record: BenchRecord) -> str:
    """The notes cell of a row: epoch time, the start-up figures, workers and threads, where it has them."""
    details, cells = record.details, []
    if details.get("epoch_s") is not None:
        cells.append(f"epoch {details['epoch_s']:.1f} s for {details['images']} images")
    if "first_step_s" in details:
        cells.append(startup_note(record))
    if details.get("workers") is not None:
        cells.append(f"{details['workers']} workers, {details['threads']} threads")
    return "; ".join(cells)


def print_table(console: Console, records: list[BenchRecord], title: str) -> None:
    """The records against their ceilings, the ratio coloured against ``RATIO_GOAL``; then the summary lines."""
    table = Table(title=title)
    for column in TABLE_COLUMNS:
        table.add_column(column, justify="left" if column in ("case", "phase", "notes") else "right")
    for r in records:
        colour = "dim" if r.reference else "green" if r.ratio is not None and r.ratio >= RATIO_GOAL else "red"
        ratio_text = "-" if r.ratio is None else f"[{colour}]{r.ratio:.3f}[/]"
        table.add_row(
            r.case, r.phase, _fmt(r.img_size), _fmt(r.batch_size), _fmt(r.ceiling_img_s),
            _fmt(r.measured_img_s), ratio_text, _fmt(r.peak_rss_mb), notes(r),
        )  # fmt: skip
    console.print(table)
    for line in (goal_summary(records), scale_summary(records)):
        if line:
            console.print(line)
