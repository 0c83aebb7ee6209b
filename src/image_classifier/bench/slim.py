"""Slim serving benchmark: an ONNX export served without the training stack, against today's ONNX backend.

``python -m image_classifier.bench.slim [--model-name resnet18 --image-size 64 --starts 5 --docker]``

In one run, on a random-weight model exported to ONNX (a bundle of it for the PyTorch backend):

- **cold start**, process start to the first ``/health`` 200, median of ``--starts``: the bundle (eager PyTorch),
  the export served by the code of ``--before`` (the last commit before ONNX serving dropped torch: the service
  then imported torch, timm and torchvision whatever it served), and the export served with the training stack
  unimportable (:data:`TRAINING_STACK`, as the slim install has none of it);
- **requests/s** and p50/p99 at 16 closed-loop clients, the ``--before`` server and the slim one loaded in
  alternating slices, so that both see the same machine;
- with ``--docker``: both images' sizes, and container start to the first ``/health`` 200 (median of
  ``--container-starts``), each serving the export (the full image's usual bundle too).

Absolute numbers depend on the (shared) machine; compare the ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from image_classifier.bench.inputs import multipart, random_bundle, sample_images
from image_classifier.bench.load import load, summarise
from image_classifier.bench.report import save_report
from image_classifier.bench.server import free_port
from image_classifier.errors import UserError, report_user_errors
from image_classifier.export import export
from image_classifier.runtime import stop_process
from image_classifier.subprocesses import run_checked

APP = "image_classifier.api.app:create_app"
TRAINING_STACK = (
    "torch", "timm", "torchvision", "hydra", "omegaconf", "dvc", "gto", "wandb", "matplotlib", "torchmetrics",
    "onnx", "scipy",
)  # fmt: skip
# Added ahead of a process's path as sitecustomize.py: importing the training stack fails, and each attempt is
# appended to $IC_IMPORT_ATTEMPTS (children inherit both through the environment).
BLOCKER = f"""
import importlib.abc, os, sys

BLOCKED = {TRAINING_STACK!r}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in BLOCKED:
            with open(os.environ["IC_IMPORT_ATTEMPTS"], "a") as log:
                log.write(name + "\\n")
            raise ModuleNotFoundError(f"No module named {{top!r}} (blocked)", name=top)
        return None


sys.meta_path.insert(0, Blocker())
"""
IMAGES = {"full": "image-classifier-api:latest", "slim": "image-classifier-api-onnx:latest"}
FIRST_SLIM_FILE = "src/image_classifier/api/backends.py"


def torchless_env(directory: Path, src: Path) -> dict[str, str]:
    """Environment in which the training stack cannot be imported (``directory`` receives the blocker)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(BLOCKER)
    attempts = directory / "attempts.txt"
    attempts.touch()
    return {"PYTHONPATH": os.pathsep.join([str(directory), str(src)]), "IC_IMPORT_ATTEMPTS": str(attempts)}


def before_commit(root: Path) -> str | None:
    """The parent of the commit that added the torch-free backend choice: today's ONNX backend before it."""
    try:
        added = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=%H", "--", FIRST_SLIM_FILE],
            cwd=root, capture_output=True, text=True, check=True, timeout=60,
        ).stdout.split()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{added[-1]}^" if added else None


def checkout_src(root: Path, commit: str, target: Path) -> Path | None:
    """``src/`` of ``commit`` extracted under ``target``; None when git cannot give it."""
    archive = target / "src.tar"
    with open(archive, "wb") as handle:
        done = subprocess.run(["git", "archive", commit, "src"], cwd=root, stdout=handle, check=False, timeout=120)
    if done.returncode != 0:
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


def wait_for_health(url: str, deadline: float, alive: Any = None) -> float:
    """Poll ``url`` until it answers 200; the time it did (``time.perf_counter``)."""
    while time.perf_counter() < deadline:
        if alive is not None and not alive():
            raise UserError(f"the server behind {url} exited before it was healthy")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.01)
    raise UserError(f"{url} did not answer 200 in time")


def start_server(model: Path, env: dict[str, str], threads: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    """uvicorn serving ``model`` on a free loopback port; the process and its base URL."""
    port = free_port()
    environment = {**os.environ, **env, "MODEL_PATH": str(model), "IC_PREDICTION_LOG": "", "IC_THREADS": str(threads)}
    command = [sys.executable, "-m", "uvicorn", "--factory", APP, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning", "--no-access-log"]  # fmt: skip
    return subprocess.Popen(command, env=environment), f"http://127.0.0.1:{port}"


def cold_starts(model: Path, env: dict[str, str], count: int) -> list[float]:
    """Seconds from starting uvicorn to its first ``/health`` 200, ``count`` times."""
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        process, url = start_server(model, env)
        try:
            ready = wait_for_health(f"{url}/health", start + 900, alive=lambda p=process: p.poll() is None)
            seconds.append(ready - start)
        finally:
            stop_process(process)
    return seconds


async def load_side_by_side(servers: dict[str, tuple[subprocess.Popen[bytes], str]], args: argparse.Namespace) -> dict:
    """Requests/s of each server at ``args.clients`` clients, in alternating slices over ``args.rounds``."""
    bodies = [multipart(image) for image in sample_images(32, args.image_size)]
    parts: dict[str, list[dict]] = {name: [] for name in servers}
    for _ in range(args.rounds):
        for name, (process, url) in servers.items():
            slice_s = args.duration / args.rounds
            parts[name].append(await load(url, bodies, args.clients, slice_s, args.warmup, process.pid))
    return {
        name: vars(summarise(name, True, args.clients, measured, args.duration)) for name, measured in parts.items()
    }


def throughput(variants: dict[str, tuple[Path, dict[str, str]]], args: argparse.Namespace) -> dict:
    servers = {name: start_server(model, env, args.threads) for name, (model, env) in variants.items()}
    try:
        for process, url in servers.values():
            wait_for_health(f"{url}/health", time.perf_counter() + 900, alive=lambda p=process: p.poll() is None)
        return asyncio.run(load_side_by_side(servers, args))
    finally:
        for process, _ in servers.values():
            stop_process(process)


def docker(*args: str, timeout: float = 300) -> str:
    return run_checked(["docker", *args], f"docker {args[0]} failed", timeout=timeout).stdout.strip()


def container_starts(image: str, models: Path, model_file: str, count: int) -> list[float]:
    """Seconds from ``docker run`` to the container's first ``/health`` 200, ``count`` times."""
    seconds = []
    for _ in range(count):
        port = free_port()
        start = time.perf_counter()
        container = docker(
            "run", "-d", "--network", "host", "-e", f"PORT={port}", "-e", f"MODEL_PATH=/app/models/{model_file}",
            "-v", f"{models}:/app/models:ro", image,
        )  # fmt: skip
        try:
            seconds.append(wait_for_health(f"http://127.0.0.1:{port}/health", start + 600) - start)
        finally:
            docker("rm", "-f", container)
    return seconds


def docker_figures(models: Path, count: int) -> dict[str, Any]:
    """Each image's size and container start-up, serving the export (and, for the full image, the bundle)."""
    figures: dict[str, Any] = {}
    for name, image in IMAGES.items():
        try:
            size = int(docker("image", "inspect", "-f", "{{.Size}}", image))
        except (UserError, OSError, ValueError) as error:
            figures[name] = {"image": image, "skipped": str(error)}
            continue
        figures[name] = {"image": image, "size_mb": round(size / 1e6, 1)}
        files = {"onnx": "bench.onnx"} | ({"bundle": "bench.pt"} if name == "full" else {})
        for kind, file in files.items():
            starts = container_starts(image, models, file, count)
            figures[name][f"container_start_{kind}_s"] = {"median": statistics.median(starts), "all": starts}
    return figures


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[3]
    work.chmod(0o755)  # the containers' user (uid 1000) reads the models from here
    models = work / "models"
    models.mkdir(mode=0o755)
    bundle = random_bundle(args.model_name, args.image_size, models / "bench.pt")
    onnx = Path(export(bundle, models / "bench.onnx").onnx_path)
    variants: dict[str, tuple[Path, dict[str, str]]] = {} if args.no_bundle else {"bundle (PyTorch)": (bundle, {})}
    before = args.before or before_commit(root)
    old_src = checkout_src(root, before, work) if before else None
    if old_src is not None:
        variants["ONNX, before"] = (onnx, {"PYTHONPATH": str(old_src)})
    slim_env = torchless_env(work / "torchless", root / "src")
    variants["ONNX, slim"] = (onnx, slim_env)
    starts = {name: cold_starts(model, env, args.starts) for name, (model, env) in variants.items()}
    attempts = Path(slim_env["IC_IMPORT_ATTEMPTS"]).read_text().split()
    names: list[str] = [name for name in ("ONNX, before", "ONNX, slim") if name in variants]
    load_variants = {name: variants[name] for name in names}
    report = {
        "model": args.model_name,
        "input_size": args.image_size,
        "before": before,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cold_start_s": {name: {"median": statistics.median(s), "all": s} for name, s in starts.items()},
        "slim_training_stack_imports": attempts,
        "load": throughput(load_variants, args),
    }
    if args.docker:
        report["docker"] = docker_figures(models, args.container_starts)
    return report


def print_report(report: dict[str, Any], console: Console) -> None:
    table = Table(title=f"Slim serving: {report['model']} at {report['input_size']} px ({report['cpus']} CPUs)")
    for column in ("what", "bundle (PyTorch)", "ONNX, before", "ONNX, slim", "slim ÷ before"):
        table.add_column(column, justify="left" if column == "what" else "right")
    cold = {name: value["median"] for name, value in report["cold_start_s"].items()}
    rps = {name: value["requests_per_s"] for name, value in report["load"].items()}
    ratio = lambda values: (  # noqa: E731
        f"{values['ONNX, slim'] / values['ONNX, before']:.2f}" if "ONNX, before" in values else "-"
    )
    table.add_row("cold start to /health, median s", *(_f(cold.get(name), 2) for name in table_names()), ratio(cold))
    table.add_row("requests/s, 16 clients", "", *(_f(rps.get(name), 1) for name in table_names()[1:]), ratio(rps))
    p50 = {name: f"{v['p50_ms']:.0f} / {v['p99_ms']:.0f}" for name, v in report["load"].items()}
    table.add_row("p50 / p99 ms", "", p50.get("ONNX, before", "-"), p50.get("ONNX, slim", "-"), "")
    console.print(table)
    console.print(
        f"Training-stack imports attempted by the slim server: {report['slim_training_stack_imports'] or 'none'}"
    )
    for name, figures in report.get("docker", {}).items():
        if "skipped" in figures:
            console.print(f"{name} image {figures['image']}: not measured ({figures['skipped']})")
            continue
        starts = ", ".join(
            f"{key.removeprefix('container_start_').removesuffix('_s')} {value['median']:.2f} s"
            for key, value in figures.items()
            if key.startswith("container_start_")
        )
        console.print(
            f"{name} image {figures['image']}: {figures['size_mb']:.0f} MB; container start to /health: {starts}"
        )


def table_names() -> list[str]:
    return ["bundle (PyTorch)", "ONNX, before", "ONNX, slim"]


def _f(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def records(report: dict[str, Any]) -> list[dict[str, Any]]:
    """``invoke bench`` records (phase ``serve``): the slim server's requests/s against today's ONNX backend."""
    load_results = report["load"]
    if "ONNX, before" not in load_results:
        return []
    before, slim = load_results["ONNX, before"]["requests_per_s"], load_results["ONNX, slim"]["requests_per_s"]
    cold = report["cold_start_s"]
    return [
        {
            "case": f"serve {report['model']} slim ONNX vs today's ONNX backend, 16 clients",
            "phase": "serve",
            "img_size": report["input_size"],
            "batch_size": None,
            "ceiling_img_s": round(before, 1),
            "measured_img_s": round(slim, 1),
            "ratio": round(slim / before, 3),
            "peak_rss_mb": None,
            "cold_start_s": {name: round(value["median"], 3) for name, value in cold.items()},
            "docker": report.get("docker"),
        }
    ]


def suite_records(scratch: Path, console: Console) -> list[dict[str, Any]]:
    """Run this benchmark (``--docker``: images that are absent are skipped) for ``invoke bench``; its records."""
    report_path = scratch / "slim_serving.json"
    command = [sys.executable, "-m", "image_classifier.bench.slim", "--docker", "--out", str(report_path)]
    done = subprocess.run(command, check=False)
    if done.returncode != 0 or not report_path.is_file():
        console.print(f"[yellow]bench.slim failed (exit {done.returncode}); slim serving records left out.[/]")
        return []
    return records(json.loads(report_path.read_text()))


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.bench.slim", description=__doc__.splitlines()[0])
    parser.add_argument("--model-name", default="resnet18", help="timm model (or baseline_cnn), random weights")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--starts", type=int, default=5, help="cold starts per variant (the median is reported)")
    parser.add_argument("--no-bundle", action="store_true", help="skip the bundle's (eager PyTorch) cold starts")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of load per server")
    parser.add_argument("--rounds", type=int, default=3, help="alternating slices the duration is split into")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of load before each measured slice")
    parser.add_argument("--threads", type=int, default=1, help="model threads in both servers")
    parser.add_argument("--before", help="git commit of today's ONNX backend (default: before the slim path)")
    parser.add_argument("--docker", action="store_true", help=f"also measure the images {', '.join(IMAGES.values())}")
    parser.add_argument("--container-starts", type=int, default=3, help="container starts per image and model")
    parser.add_argument("--out", type=Path, default=Path("reports/bench/slim_serving.json"))
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 120))
    with tempfile.TemporaryDirectory() as tmp:
        report = run(args, Path(tmp))
    print_report(report, console)
    save_report(report, args.out, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
