"""Benchmark: importing a user's photos. Photos/s and peak memory for 2,000 and 20,000 generated photos.

Each case imports a folder of class folders of small generated JPEGs in a child process (decoding on every
core) while this process samples the memory of the child and its workers, alternating with the same import
on one process, the rate the parallel one is compared with. Each case runs ``--rounds`` times and the
fastest is kept. Goals: peak memory within 10 % between 2,000 and 20,000 photos, and at least 1.5x the
one-process rate with 2 or more cores, at 20,000 photos.

``python -m image_classifier.bench.imports [--work DIR] [--sizes 2000,20000] [--rounds N]``; ``invoke bench``
runs it too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from image_classifier.data.sources.decode import default_workers
from image_classifier.errors import report_user_errors

console = Console()
CLASSES = 10
PHOTO_SIDE = 64
SIZES = (2_000, 20_000)
MEMORY_GOAL = 0.10
SPEEDUP_GOAL = 1.5
ROUNDS = 3


def generate_photos(folder: Path, count: int) -> Path:
    """``count`` distinct small JPEGs in ``CLASSES`` class folders (made once, reused)."""
    done = folder / ".complete"
    if done.is_file() and done.read_text() == str(count):
        return folder
    for index in range(count):
        rng = random.Random(index)
        image = Image.new("RGB", (PHOTO_SIDE, PHOTO_SIDE), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.randrange(PHOTO_SIDE), rng.randrange(PHOTO_SIDE)
            box = [x, y, x + rng.randrange(8, PHOTO_SIDE), y + rng.randrange(8, PHOTO_SIDE)]
            draw.ellipse(box, fill=tuple(rng.randrange(256) for _ in range(3)))
        target = folder / f"class_{index % CLASSES}" / f"{index:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        image.save(target, quality=90)
    done.write_text(str(count))
    return folder


def tree_memory_mb(process: psutil.Process) -> tuple[float, float]:
    """RSS of ``process`` alone, and the proportional set size (PSS) of it and its children together, in MB."""
    try:
        rss = process.memory_info().rss
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0.0
    pss = 0
    for member in members:
        try:
            info = member.memory_full_info()
            pss += getattr(info, "pss", info.rss)
        except psutil.Error:
            continue
    return rss / 2**20, pss / 2**20


def measure_import(source: Path, work: Path, count: int, workers: int) -> dict[str, Any]:
    """Import ``source`` in a child process; its photos/s (import only, not start-up) and peak memory."""
    name = f"bench_{count}_{workers}"
    project = work / "project"
    (project / "configs" / "data").mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "image_classifier.bench.imports", "--run-one", json.dumps(
        {"name": name, "source": str(source), "root": str(work / "data"), "workers": workers}
    )]  # fmt: skip
    environment = {**os.environ, "PROJECT_ROOT": str(project), "TQDM_DISABLE": "1"}
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
    peaks = [0.0, 0.0]
    watched = psutil.Process(child.pid)

    def sample() -> None:
        while child.poll() is None:
            rss, pss = tree_memory_mb(watched)
            peaks[0], peaks[1] = max(peaks[0], rss), max(peaks[1], pss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    sampler.join()
    if child.returncode != 0:
        raise RuntimeError(f"import of {count} photos failed (exit {child.returncode})")
    seconds = json.loads(out.strip().splitlines()[-1])["seconds"]
    return {
        "case": f"import {count:,} photos",
        "phase": "import",
        "images": count,
        "workers": workers,
        "seconds": round(seconds, 3),
        "photos_per_s": round(count / seconds, 1),
        "peak_rss_mb": round(peaks[0], 1),
        "peak_pss_mb": round(peaks[1], 1),
    }


def run_one(spec: dict[str, Any]) -> None:
    """In the child: time ``ImportedSource.prepare`` alone (copy, decode, hash, report, write)."""
    from image_classifier.data.sources.user import ImportedSource

    source = ImportedSource(spec["name"], workers=spec["workers"])
    start = time.perf_counter()
    source.prepare(Path(spec["root"]), Path(spec["source"]), {"source": spec["source"]})
    print(json.dumps({"seconds": time.perf_counter() - start}))


def import_records(work: Path, sizes: tuple[int, ...] = SIZES, rounds: int = ROUNDS) -> list[dict[str, Any]]:
    """The import of each size on every core and on one process, alternately, ``rounds`` times: the fastest of
    each (this machine's disk and neighbours vary from run to run), with the highest peak memory of any."""
    best: dict[tuple[int, int], dict[str, Any]] = {}
    for count in sizes:
        source = generate_photos(work / f"photos_{count}", count)
        for _ in range(rounds):
            for workers in (default_workers(), 1):
                shutil.rmtree(work / "data", ignore_errors=True)
                os.sync()  # the last import's files are on disk before this one is timed
                record = measure_import(source, work, count, workers)
                kept = best.setdefault((count, workers), record)
                peaks = {key: max(record[key], kept[key]) for key in ("peak_rss_mb", "peak_pss_mb")}
                best[(count, workers)] = {**max(record, kept, key=lambda r: r["photos_per_s"]), **peaks}
    records = []
    for workers in (default_workers(), 1):
        for count in sizes:
            label = f"import {count:,} photos" + (" (1 process)" if workers == 1 else "")
            records.append({**best[(count, workers)], "case": label, **({"reference": True} if workers == 1 else {})})
            console.print(f"[bold]{label}[/]: {records[-1]['photos_per_s']:,.0f} photos/s (best of {rounds})")
    return records


def goals(records: list[dict[str, Any]]) -> list[str]:
    """The two goals, measured: memory flat in the number of photos, and the parallel speed-up at each size
    (the goal is judged on the largest, where the import's fixed start-up counts least)."""
    parallel = sorted((r for r in records if not r.get("reference")), key=lambda r: r["images"])
    single = {r["images"]: r for r in records if r.get("reference")}
    lines = []
    if len(parallel) >= 2:
        small, large = parallel[0], parallel[-1]
        growth = large["peak_pss_mb"] / small["peak_pss_mb"] - 1
        mark = "[green]met[/]" if abs(growth) <= MEMORY_GOAL else "[red]missed[/]"
        lines.append(
            f"peak memory {large['images']:,} vs {small['images']:,} photos: {large['peak_pss_mb']:.0f} vs "
            f"{small['peak_pss_mb']:.0f} MB ({100 * growth:+.1f} %; goal within {MEMORY_GOAL:.0%}: {mark})"
        )
    for record in parallel:
        if record["images"] not in single:
            continue
        speedup = record["photos_per_s"] / single[record["images"]]["photos_per_s"]
        judged = record is parallel[-1]
        mark = ("[green]met[/]" if speedup >= SPEEDUP_GOAL else "[red]missed[/]") if judged else "not judged"
        lines.append(
            f"{record['images']:,} photos, {record['workers']} processes vs 1: x{speedup:.2f} photos/s "
            f"(goal x{SPEEDUP_GOAL}: {mark}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})"
        )
    return lines


def print_import_table(records: list[dict[str, Any]]) -> None:
    table = Table(title="Importing photos (64 px JPEGs, folder of class folders)")
    for column in ("case", "workers", "seconds", "photos/s", "peak RSS MB (main)", "peak PSS MB (all)"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in records:
        table.add_row(
            r["case"], str(r["workers"]), f"{r['seconds']:.1f}", f"{r['photos_per_s']:,.0f}",
            f"{r['peak_rss_mb']:.0f}", f"{r['peak_pss_mb']:.0f}",
        )  # fmt: skip
    console.print(table)
    for line in goals(records):
        console.print(line)


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.bench.imports", description=__doc__)
    parser.add_argument("--work", type=Path, default=Path("outputs/bench/imports"), help="photos and imports")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="photo counts (default 2000,20000)")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"runs of each case, the fastest kept ({ROUNDS})")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_one:
        run_one(json.loads(args.run_one))
        return 0
    records = import_records(args.work, tuple(int(size) for size in args.sizes.split(",")), args.rounds)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "imports.json").write_text(json.dumps(records, indent=2))
    print_import_table(records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
