"""Overload benchmark: 64 closed-loop clients against a server sized for 16 (``IC_MAX_QUEUE=16``).

``python -m image_classifier.bench.overload [--clients 16 64 --duration 10]``

One uvicorn serves a random-weight model with ``IC_MAX_QUEUE`` equal to its batch. The same server is loaded
by ``--clients`` closed-loop clients in turn (each posts one JPEG, waits for the answer, and posts again; a
503 is followed by the wait its ``Retry-After`` asks for, as a well-behaved client does). For each load it
records the p50/p99 latency of the accepted requests, the p99 and the largest latency of the refused ones,
every other non-200 status, and the peak resident memory of the server and its model process (sampled every
50 ms). What shedding should give: the accepted p99 under overload within 2x the p99 at the sized load, every
refusal answered in under 50 ms, a flat peak RSS, and no other 5xx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from image_classifier.bench.inputs import multipart, random_bundle, sample_images
from image_classifier.bench.report import save_report
from image_classifier.bench.server import UvicornServer
from image_classifier.errors import report_user_errors

REFUSAL_GOAL_MS = 50.0
P99_GOAL_RATIO = 2.0


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of ``process`` and its children."""
    total = 0
    for member in (process, *process.children(recursive=True)):
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


async def watch_rss(process: psutil.Process, stop: asyncio.Event, peak: list[int]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], tree_rss(process))
        await asyncio.sleep(0.05)


async def overload(url: str, bodies: list[tuple[bytes, str]], clients: int, duration: float, pid: int) -> dict:
    """``clients`` closed-loop clients for ``duration`` seconds: latencies by outcome, statuses, peak RSS."""
    accepted: list[float] = []
    refused: list[float] = []
    statuses: Counter[int] = Counter()
    stop_at = time.perf_counter() + duration

    async def client(worker: int, session: aiohttp.ClientSession) -> None:
        i = worker
        while (start := time.perf_counter()) < stop_at:
            body, content_type = bodies[i % len(bodies)]
            i += clients
            async with session.post(f"{url}/predict", data=body, headers={"Content-Type": content_type}) as response:
                await response.read()
                status, retry_after = response.status, response.headers.get("Retry-After")
            elapsed = time.perf_counter() - start
            statuses[status] += 1
            if status == 200:
                accepted.append(elapsed)
            elif status == 503 and retry_after is not None:
                refused.append(elapsed)
                await asyncio.sleep(min(float(retry_after), max(stop_at - time.perf_counter(), 0)))

    stop, peak = asyncio.Event(), [0]
    watcher = asyncio.create_task(watch_rss(psutil.Process(pid), stop, peak))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        await asyncio.gather(*(client(w, session) for w in range(clients)))
    stop.set()
    await watcher
    ms = lambda values, q: float(np.percentile(np.array(values) * 1000, q)) if values else None  # noqa: E731
    return {
        "clients": clients,
        "accepted": len(accepted),
        "refused": len(refused),
        "accepted_p50_ms": ms(accepted, 50),
        "accepted_p99_ms": ms(accepted, 99),
        "refused_p99_ms": ms(refused, 99),
        "refused_max_ms": ms(refused, 100),
        "other_statuses": {str(s): n for s, n in statuses.items() if s != 200 and not (s == 503 and refused)},
        "peak_rss_mb": round(peak[0] / 2**20, 1),
    }


async def run_loads(args: argparse.Namespace, model: Path, bodies: list[tuple[bytes, str]]) -> list[dict]:
    server = UvicornServer(model, args.queue, args.max_wait_ms, args.threads, {"IC_MAX_QUEUE": str(args.queue)})
    try:
        await server.wait_healthy()
        await overload(server.url, bodies, args.queue, args.warmup, server.process.pid)  # warm the server up
        return [await overload(server.url, bodies, n, args.duration, server.process.pid) for n in args.clients]
    finally:
        server.stop()


def verdict(loads: list[dict]) -> dict[str, Any]:
    """The overload's figures against the sized load's (the first and the last of ``loads``)."""
    sized, heavy = loads[0], loads[-1]
    ratio = heavy["accepted_p99_ms"] / sized["accepted_p99_ms"]
    rss_ratio = heavy["peak_rss_mb"] / sized["peak_rss_mb"]
    other_5xx = sum(n for s, n in heavy["other_statuses"].items() if s.startswith("5"))
    return {
        "accepted_p99_ratio": round(ratio, 3),
        "peak_rss_ratio": round(rss_ratio, 3),
        "refused_max_ms": heavy["refused_max_ms"],
        "other_5xx": other_5xx,
        "ok": ratio <= P99_GOAL_RATIO
        and (heavy["refused_max_ms"] or 0) < REFUSAL_GOAL_MS
        and rss_ratio <= 1.1
        and other_5xx == 0,
    }


def print_report(report: dict, console: Console) -> None:
    table = Table(title=f"Overload: {report['model']} at {report['image_size']} px, IC_MAX_QUEUE={report['queue']}")
    for column in ("clients", "accepted", "refused", "accepted p50 ms", "accepted p99 ms", "refused p99 ms",
                   "refused max ms", "other statuses", "peak RSS MB"):  # fmt: skip
        table.add_column(column, justify="right")
    fmt = lambda value: "-" if value is None else f"{value:.1f}"  # noqa: E731
    for load in report["loads"]:
        table.add_row(
            str(load["clients"]), str(load["accepted"]), str(load["refused"]), fmt(load["accepted_p50_ms"]),
            fmt(load["accepted_p99_ms"]), fmt(load["refused_p99_ms"]), fmt(load["refused_max_ms"]),
            json.dumps(load["other_statuses"]), fmt(load["peak_rss_mb"]),
        )  # fmt: skip
    console.print(table)
    v = report["verdict"]
    console.print(
        f"accepted p99 {v['accepted_p99_ratio']:.2f}x the sized load's (goal <= {P99_GOAL_RATIO:g}x), refusals within "
        f"{fmt(v['refused_max_ms'])} ms (goal < {REFUSAL_GOAL_MS:g}), peak RSS {v['peak_rss_ratio']:.2f}x, "
        f"other 5xx {v['other_5xx']}: {'ok' if v['ok'] else 'NOT MET'}"
    )


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m image_classifier.bench.overload", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-name", default="resnet18", help="timm model (or baseline_cnn), random weights")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--queue", type=int, default=16, help="IC_MAX_QUEUE and IC_MAX_BATCH of the server")
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 64], help="the sized load first")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of each load")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the model")
    parser.add_argument("--out", type=Path, default=Path("reports/bench_overload.json"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = random_bundle(args.model_name, args.image_size, Path(tmp) / "bench.pt")
        bodies = [multipart(image) for image in sample_images(32, args.image_size)]
        loads = asyncio.run(run_loads(args, model, bodies))
    report = {
        "model": args.model_name,
        "image_size": args.image_size,
        "queue": args.queue,
        "duration_s": args.duration,
        "loads": loads,
        "verdict": verdict(loads),
    }
    console = Console(width=max(Console().width, 130))
    print_report(report, console)
    save_report(report, args.out, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def overload_records(scratch: Path, cwd: Path | None = None) -> list[dict[str, Any]]:
    """The record (phase ``serve``) of ``python -m image_classifier.bench.overload``, for ``invoke bench``."""
    import subprocess

    report_path = scratch / "bench_overload.json"
    command = [sys.executable, "-m", "image_classifier.bench.overload", "--out", str(report_path)]
    done = subprocess.run(command, cwd=cwd, check=False)
    if done.returncode != 0 or not report_path.is_file():
        return []
    report = json.loads(report_path.read_text())
    heavy, v = report["loads"][-1], report["verdict"]
    refused = "-" if v["refused_max_ms"] is None else f"{v['refused_max_ms']:.0f}"
    return [
        {
            "case": f"overload {report['model']}: {heavy['clients']} clients vs IC_MAX_QUEUE={report['queue']} "
            f"(accepted p99 {v['accepted_p99_ratio']:.2f}x, refusals <= {refused} ms, RSS {v['peak_rss_ratio']:.2f}x, "
            f"other 5xx {v['other_5xx']})",
            "phase": "serve",
            "img_size": report["image_size"],
            "batch_size": report["queue"],
            "ratio": None,
            "peak_rss_mb": heavy["peak_rss_mb"],
            "p99_ms": heavy["accepted_p99_ms"],
            "overload": v,
        }
    ]
