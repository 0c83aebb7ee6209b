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
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from image_classifier.api.predictors import load_predictor
from image_classifier.bench.ceilings import offline_ceilings, offline_curve
from image_classifier.bench.inputs import multipart, random_bundle, sample_images
from image_classifier.bench.load import LoadResult, load, summarise
from image_classifier.bench.report import save_report
from image_classifier.bench.server import UvicornServer
from image_classifier.errors import report_user_errors
from image_classifier.export import export


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


def measure_backend(
    path: Path, backend: str, args: argparse.Namespace, images: list[bytes]
) -> tuple[list[LoadResult], dict[str, float]]:
    """The load results of one backend and its offline ceilings, measured right before and right after the load
    runs and averaged, so that both sides of each ratio see the same (shared, noisy) machine."""
    bodies = [multipart(image) for image in images]
    before = offline_ceilings(path, images, args.max_batch, args.duration, args.threads)
    results = asyncio.run(serve_and_load(path, backend, args, bodies))
    after = offline_ceilings(path, images, args.max_batch, args.duration, args.threads)
    ceilings = {key: (before[key] + after[key]) / 2 for key in before}
    ceilings |= {f"{key}_before": before[key] for key in ("model", "pipeline")}
    ceilings |= {f"{key}_after": after[key] for key in ("model", "pipeline")}
    return results, ceilings


def add_ratios(results: list[LoadResult], ceilings: dict[str, dict[str, float]]) -> None:
    """Each result against its backend's ceilings, and micro-batching's speed-up over one request per pass."""
    for result in results:
        ceiling = ceilings[result.backend]
        result.ratio_to_model_ceiling = result.requests_per_s / ceiling["model"]
        result.ratio_to_pipeline_ceiling = result.requests_per_s / ceiling["pipeline"]
        per_cpu_second = result.requests / result.server_cpu_s if result.server_cpu_s else 0.0
        result.cpu_ratio_to_model_ceiling = per_cpu_second / ceiling["model_cpu"]
        if result.micro_batching:
            baseline = next(
                r for r in results
                if r.backend == result.backend and not r.micro_batching and r.concurrency == result.concurrency
            )  # fmt: skip
            result.speedup_vs_one_per_forward = result.requests_per_s / baseline.requests_per_s


def run(args: argparse.Namespace, workdir: Path) -> dict:
    """Serve the bundle (``--model``, else a random-weight one) and its ONNX export, load both; the report."""
    bundle = args.model or random_bundle(args.model_name, args.image_size, workdir / "bench.pt")
    onnx_path = export(bundle, workdir / "bench.onnx").onnx_path
    described = load_predictor(bundle)
    size = described.data_config["input_size"][-1]
    images = sample_images(32, size)
    ceilings: dict[str, dict[str, float]] = {}
    results: list[LoadResult] = []
    for backend, path in {"pytorch": Path(bundle), "onnxruntime": Path(onnx_path)}.items():
        measured, ceilings[backend] = measure_backend(path, backend, args, images)
        results += measured
    add_ratios(results, ceilings)
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
