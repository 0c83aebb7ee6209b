"""Closed-loop load on a server's ``/predict``: latencies, errors, server CPU and the batches it ran."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import psutil


@dataclass
class LoadResult:
    backend: str
    micro_batching: bool
    concurrency: int
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float = 0.0
    ratio_to_model_ceiling: float = 0.0
    ratio_to_pipeline_ceiling: float = 0.0
    cpu_ratio_to_model_ceiling: float = 0.0
    speedup_vs_one_per_forward: float | None = None
    mean_batch: float = 0.0


async def _batch_totals(session: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """Images and forward passes the server has run so far (its ``ic_batch_size`` histogram)."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    totals = dict(re.findall(r"^ic_batch_size_(sum|count) (\S+)$", text, re.M))
    return float(totals.get("sum", 0)), float(totals.get("count", 0))


def _cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds of the server and its model process."""
    total = 0.0
    for member in (process, *process.children(recursive=True)):
        try:
            times = member.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def load(
    url: str, bodies: list[tuple[bytes, str]], concurrency: int, duration: float, warmup: float, server_pid: int
) -> dict:
    """``concurrency`` closed-loop clients posting images for ``duration`` seconds after ``warmup``."""
    latencies: list[float] = []
    errors = 0
    server = psutil.Process(server_pid)
    at_start: dict[str, Any] = {}
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + duration

    async def mark_start(session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(warmup)
        at_start["cpu"] = _cpu_seconds(server)
        at_start["batches"] = await _batch_totals(session, url)

    async def client(worker: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        i = worker
        while (now := time.perf_counter()) < stop_at:
            body, content_type = bodies[i % len(bodies)]
            i += concurrency
            async with session.post(f"{url}/predict", data=body, headers={"Content-Type": content_type}) as response:
                await response.read()
                ok = response.status == 200
            if now >= measure_from:
                latencies.append(time.perf_counter() - now)
                errors += not ok

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session, aiohttp.ClientSession() as side:
        # the metrics are read on a connection of their own, not queued behind the clients' requests
        await asyncio.gather(mark_start(side), *(client(w, session) for w in range(concurrency)))
        cpu = _cpu_seconds(server) - at_start["cpu"]
        images, passes = np.subtract(await _batch_totals(side, url), at_start["batches"])
    return {"server_cpu_s": cpu, "latencies_s": latencies, "errors": errors, "images": images, "passes": passes}


def summarise(backend: str, micro_batching: bool, concurrency: int, parts: list[dict], duration: float) -> LoadResult:
    """One result from the rounds of one configuration."""
    latencies = np.array([s for part in parts for s in part["latencies_s"]]) * 1000
    return LoadResult(
        backend=backend,
        micro_batching=micro_batching,
        concurrency=concurrency,
        requests=len(latencies),
        errors=sum(part["errors"] for part in parts),
        requests_per_s=len(latencies) / duration,
        p50_ms=float(np.percentile(latencies, 50)),
        p99_ms=float(np.percentile(latencies, 99)),
        server_cpu_s=sum(part["server_cpu_s"] for part in parts),
        mean_batch=sum(part["images"] for part in parts) / max(sum(part["passes"] for part in parts), 1),
    )
