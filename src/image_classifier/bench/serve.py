"""Serving benchmark: requests/s and p50/p99 latency of a real uvicorn on 127.0.0.1.

``python -m image_classifier.bench.serve [--model-name resnet18 --image-size 64 --duration 5]``

For eager PyTorch and ONNX Runtime, at concurrency 1 and 16, with micro-batching on and off (one
request per forward pass), against two offline ceilings measured around each backend's runs with the
same model threads: batched forward passes on in-memory tensors (``model``), and batched decode +
preprocess + forward of the same image bytes (``pipeline``). ``per CPU-s`` divides the server's images
per CPU second by the model ceiling's, which other processes on a shared machine do not disturb.

The offline model throughput is also measured at batch 1 and at half the maximum batch, and each
result records the mean batch the server actually ran (from its ``ic_batch_size`` metric). With
``c`` closed-loop clients and a model that never idles, two consecutive batches hold at most ``c``
images between them, so at concurrency 16 the served batches average at most 8: the model's own
throughput at batch 8 over batch 16 bounds the ratio to the batch-16 ceiling.
Absolute numbers depend on the machine; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from image_classifier.api.images import prepare
from image_classifier.api.predictors import load_predictor
from image_classifier.atomic import write_text_atomic
from image_classifier.checkpoint import Bundle, library_versions, save_bundle
from image_classifier.errors import UserError, report_user_errors
from image_classifier.export import export
from image_classifier.model import create_model, model_data_config
from image_classifier.preprocess import BatchedEvalTransform
from image_classifier.runtime import stop_process


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


def random_bundle(model_name: str, image_size: int, path: Path, num_classes: int = 10) -> Path:
    """A bundle with seeded random weights: throughput does not depend on what the weights learned."""
    torch.manual_seed(0)
    model = create_model(model_name, num_classes=num_classes).eval()
    bundle = Bundle(
        state_dict=model.state_dict(),
        model_name=model_name,
        model_kwargs={},
        classes=[f"class_{i}" for i in range(num_classes)],
        data_config=model_data_config(model, image_size),
        config={},
        lineage={"git_commit": "benchmark"},
        metrics={},
        versions=library_versions(),
        epoch=0,
    )
    return save_bundle(path, bundle)


def sample_images(count: int, size: int, seed: int = 0) -> list[bytes]:
    """JPEG-encoded noise images of ``size`` pixels (decoding cost like real small photos)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def _rate(step: Callable[[], int], duration: float) -> tuple[float, float]:
    """Items per wall second and per CPU second of repeated ``step()`` calls (each returns its item count)."""
    for _ in range(2):
        step()
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < duration:
        done += step()
    return done / (time.perf_counter() - start), done / (time.process_time() - cpu)


def offline_ceilings(
    model_path: Path, images: list[bytes], batch: int, duration: float, threads: int
) -> dict[str, float]:
    """Images per second (wall, and per CPU second: ``*_cpu``) of batched forward passes (``model``) and of
    decode + preprocess + forward (``pipeline``) at ``batch``; and of forward passes alone at batch 1 and
    ``batch // 2`` (``model_b1``, ``model_b8`` for a batch of 16), in half the time."""
    predictor = load_predictor(model_path, threads)
    preprocess = BatchedEvalTransform(predictor.data_config)

    def pixels(size: int) -> np.ndarray:
        chunk = (images * (size // len(images) + 1))[:size]
        return np.stack([prepare(data, "x", preprocess.pixels, 2**30, 2**30, with_stats=False)[0] for data in chunk])

    def model_step(size: int) -> Callable[[], int]:
        tensors = preprocess.batch(pixels(size))

        def step() -> int:
            predictor(tensors)
            return size

        return step

    def pipeline_step() -> int:
        predictor(preprocess.batch(pixels(batch)))
        return batch

    model, model_cpu = _rate(model_step(batch), duration)
    pipeline, pipeline_cpu = _rate(pipeline_step, duration)
    ceilings = {"model": model, "model_cpu": model_cpu, "pipeline": pipeline, "pipeline_cpu": pipeline_cpu}
    for size in sorted({1, max(batch // 2, 1)}):
        ceilings[f"model_b{size}"] = _rate(model_step(size), duration / 2)[0]
    return ceilings


def offline_curve(ceiling: dict[str, float], max_batch: int) -> dict[int, float]:
    """The model's offline images/s by batch size, from one backend's :func:`offline_ceilings`."""
    by_batch = {int(m[1]): value for key, value in ceiling.items() if (m := re.fullmatch(r"model_b(\d+)", key))}
    return dict(sorted((by_batch | {max_batch: ceiling["model"]}).items()))


def save_report(report: dict[str, Any], out: Path, console: Console) -> None:
    """Write a benchmark's JSON report to ``out`` (atomically, parents made) and say where."""
    write_text_atomic(out, json.dumps(report, indent=2) + "\n")
    console.print(f"Wrote {out}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UvicornServer:
    """``uvicorn --factory image_classifier.api.app:create_app`` in a subprocess on a free loopback port."""

    def __init__(
        self, model_path: Path, max_batch: int, max_wait_ms: float, threads: int, env: dict[str, str] | None = None
    ) -> None:
        self.port = _free_port()
        env = {
            **os.environ,
            "MODEL_PATH": str(model_path),
            "IC_MAX_BATCH": str(max_batch),
            "IC_MAX_WAIT_MS": str(max_wait_ms),
            "IC_PREDICTION_LOG": "",
            "IC_THREADS": str(threads),
            **(env or {}),
        }
        command = [sys.executable, "-m", "uvicorn", "--factory", "image_classifier.api.app:create_app",
                   "--host", "127.0.0.1", "--port", str(self.port),
                   "--log-level", "warning", "--no-access-log"]  # fmt: skip
        self.process = subprocess.Popen(command, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise UserError(f"uvicorn exited with status {self.process.returncode}")
                try:
                    async with session.get(f"{self.url}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise UserError(f"uvicorn did not become healthy in {timeout:.0f} s")

    def stop(self) -> None:
        stop_process(self.process)


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


def multipart(image: bytes, boundary: str = "benchmark-boundary") -> tuple[bytes, str]:
    """One pre-encoded multipart body, so the load generator spends little CPU per request."""
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="image.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


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


async def serve_and_load(
    model_path: Path, backend: str, args: argparse.Namespace, bodies: list[tuple[bytes, str]]
) -> list[LoadResult]:
    """Micro-batching on and off, served side by side and loaded in alternating slices over ``args.rounds``
    rounds, so that both see the same machine."""
    servers = {
        True: UvicornServer(model_path, args.max_batch, args.max_wait_ms, args.threads),
        False: UvicornServer(model_path, 1, args.max_wait_ms, args.threads),
    }
    try:
        for server in servers.values():
            await server.wait_healthy()
        results = []
        slice_s = args.duration / args.rounds
        for concurrency in args.concurrency:
            parts: dict[bool, list[dict]] = {True: [], False: []}
            for _ in range(args.rounds):
                for micro_batching, server in servers.items():
                    part = await load(server.url, bodies, concurrency, slice_s, args.warmup, server.process.pid)
                    parts[micro_batching].append(part)
            for micro_batching, measured in parts.items():
                results.append(summarise(backend, micro_batching, concurrency, measured, args.duration))
        return results
    finally:
        for server in servers.values():
            server.stop()


def run(args: argparse.Namespace, workdir: Path) -> dict:
    bundle = args.model or random_bundle(args.model_name, args.image_size, workdir / "bench.pt")
    onnx_path = export(bundle, workdir / "bench.onnx").onnx_path
    described = load_predictor(bundle)
    size = described.data_config["input_size"][-1]
    images = sample_images(32, size)
    bodies = [multipart(image) for image in images]
    models = {"pytorch": Path(bundle), "onnxruntime": Path(onnx_path)}
    ceilings: dict[str, dict[str, float]] = {}
    results: list[LoadResult] = []
    for backend, path in models.items():
        # Measured right before and right after the backend's load runs and averaged, so that both sides of
        # each ratio see the same (shared, noisy) machine.
        before = offline_ceilings(path, images, args.max_batch, args.duration, args.threads)
        results += asyncio.run(serve_and_load(path, backend, args, bodies))
        after = offline_ceilings(path, images, args.max_batch, args.duration, args.threads)
        ceilings[backend] = {key: (before[key] + after[key]) / 2 for key in before}
        ceilings[backend] |= {f"{key}_before": before[key] for key in ("model", "pipeline")}
        ceilings[backend] |= {f"{key}_after": after[key] for key in ("model", "pipeline")}
    for result in results:
        result.ratio_to_model_ceiling = result.requests_per_s / ceilings[result.backend]["model"]
        result.ratio_to_pipeline_ceiling = result.requests_per_s / ceilings[result.backend]["pipeline"]
        per_cpu_second = result.requests / result.server_cpu_s if result.server_cpu_s else 0.0
        result.cpu_ratio_to_model_ceiling = per_cpu_second / ceilings[result.backend]["model_cpu"]
        if result.micro_batching:
            baseline = next(
                r for r in results
                if r.backend == result.backend and not r.micro_batching and r.concurrency == result.concurrency
            )  # fmt: skip
            result.speedup_vs_one_per_forward = result.requests_per_s / baseline.requests_per_s
    return {
        "model": described.model_name,
        "input_size": size,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "cpus": os.cpu_count(),
        "threads": args.threads,
        "offline_ceilings_images_per_s": ceilings,
        "results": [asdict(result) for result in results],
    }


def print_report(report: dict, console: Console) -> None:
    ceilings = report["offline_ceilings_images_per_s"]
    table = Table(
        title=f"Serving {report['model']} at {report['input_size']} px, max batch {report['max_batch']}, "
        f"{report['threads']} model thread(s)"
    )
    for column in ("backend", "batching", "conc.", "req/s", "p50 ms", "p99 ms", "mean batch", "÷ model ceiling",
                   "÷ pipeline ceiling", "per CPU-s ÷ model", "× one-per-forward"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in report["results"]:
        table.add_row(
            r["backend"], "micro" if r["micro_batching"] else "off", str(r["concurrency"]),
            f"{r['requests_per_s']:.1f}",
            f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['mean_batch']:.1f}", f"{r['ratio_to_model_ceiling']:.2f}",
            f"{r['ratio_to_pipeline_ceiling']:.2f}",
            f"{r['cpu_ratio_to_model_ceiling']:.2f}",
            "" if r["speedup_vs_one_per_forward"] is None else f"{r['speedup_vs_one_per_forward']:.2f}",
        )  # fmt: skip
    console.print(table)
    for backend, ceiling in ceilings.items():
        by_batch = offline_curve(ceiling, report["max_batch"])
        curve = ", ".join(f"batch {size} {value:.1f}" for size, value in by_batch.items())
        console.print(
            f"{backend} offline ceilings (mean of before/after): model {ceiling['model']:.1f} images/s "
            f"({ceiling['model_before']:.1f}/{ceiling['model_after']:.1f}), pipeline (decode + preprocess + model) "
            f"{ceiling['pipeline']:.1f} images/s; per CPU second: model {ceiling['model_cpu']:.1f}; "
            f"model alone at {curve}"
        )


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.bench.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="checkpoint bundle to serve (default: a random-weight model)")
    parser.add_argument(
        "--model-name", default="resnet18", help="timm model (or baseline_cnn) when --model is not given"
    )
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per configuration")
    parser.add_argument("--rounds", type=int, default=3, help="alternating slices the duration is split into")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of load before each measured slice")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads of the model, offline and in the server (same for both)",
    )
    parser.add_argument("--out", type=Path, default=Path("reports/bench_serve.json"))
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 130))
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args, Path(tmp))
    print_report(report, console)
    save_report(report, args.out, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
