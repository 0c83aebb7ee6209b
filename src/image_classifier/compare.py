"""Compare architectures: run the ``experiment=compare`` Hydra multirun, profile each best bundle, report.

``python -m image_classifier.compare [hydra overrides]`` trains every model of the sweep with one
recipe, then writes ``model_comparison.md`` (accuracy, macro F1, parameters, GMACs, training
images/s, inference latency) and ``figures/model_comparison.png`` to ``--out`` (``reports/``).
``--sweep-dir DIR`` puts the multirun there; ``--report-only`` reports on one that already ran.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from image_classifier.checkpoint import load_bundle
from image_classifier.errors import UserError, report_user_errors
from image_classifier.model import count_parameters
from image_classifier.project import project_root


@dataclass
class Profile:
    """What one model costs: size, compute, training throughput and single-image latency (CPU)."""

    params: int
    gmacs: float
    train_images_per_s: float
    latency_ms: float


@dataclass
class Row:
    """One model's line in the comparison."""

    model: str
    test_accuracy: float
    test_f1_macro: float
    best_epoch: int
    run_dir: str
    profile: Profile


def count_gmacs(model: nn.Module, input_size: tuple[int, int, int]) -> float:
    """Multiply-accumulates of one forward pass on one image, in billions (torch's FLOP counter / 2)."""
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_size))
    return counter.get_total_flops() / 2 / 1e9


def train_throughput(model: nn.Module, input_size: tuple[int, int, int], batch_size: int, steps: int = 3) -> float:
    """Training images/s: SGD steps on in-memory batches (the model's compute ceiling, no data loading)."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    images, targets = torch.randn(batch_size, *input_size), torch.zeros(batch_size, dtype=torch.long)
    loss_fn = nn.CrossEntropyLoss()
    for step in range(steps + 1):  # the first step warms up
        if step == 1:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), targets).backward()
        optimizer.step()
    return steps * batch_size / (time.perf_counter() - start)


def inference_latency_ms(model: nn.Module, input_size: tuple[int, int, int], repeats: int = 10) -> float:
    """Median single-image inference time in milliseconds."""
    model.eval()
    image = torch.randn(1, *input_size)
    times = []
    with torch.inference_mode():
        model(image)
        for _ in range(repeats):
            start = time.perf_counter()
            model(image)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def profile_model(model: nn.Module, input_size: tuple[int, int, int], batch_size: int) -> Profile:
    return Profile(
        params=count_parameters(model),
        gmacs=count_gmacs(model, input_size),
        train_images_per_s=train_throughput(model, input_size, batch_size),
        latency_ms=inference_latency_ms(model, input_size),
    )


def collect(sweep_dir: Path) -> list[Row]:
    """A row per finished job of the multirun in ``sweep_dir`` (a job dir holds metrics.json and best.pt)."""
    rows = []
    for metrics_path in sorted(sweep_dir.glob("*/metrics.json")):
        run_dir = metrics_path.parent
        metrics = json.loads(metrics_path.read_text())
        bundle = load_bundle(run_dir / "checkpoints" / "best.pt")
        batch_size = int(bundle.config.get("data", {}).get("batch_size", 32))
        rows.append(
            Row(
                model=bundle.model_name,
                test_accuracy=metrics.get("test/accuracy", float("nan")),
                test_f1_macro=metrics.get("test/f1_macro", float("nan")),
                best_epoch=int(metrics.get("best/epoch", bundle.epoch)),
                run_dir=str(run_dir),
                profile=profile_model(bundle.build_model(), bundle.input_size, batch_size),
            )
        )
    if not rows:
        raise UserError(f"No finished runs (metrics.json) under {sweep_dir}.")
    return sorted(rows, key=lambda row: -row.test_accuracy)


def render_markdown(rows: list[Row], sweep_dir: Path, input_size: tuple[int, int, int], figure: str) -> str:
    header = (
        "| model | test accuracy | test macro F1 | parameters (M) | GMACs | train images/s | latency (ms) |\n"
        "|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [
        f"| {r.model} | {r.test_accuracy:.4f} | {r.test_f1_macro:.4f} | {r.profile.params / 1e6:.2f} | "
        f"{r.profile.gmacs:.4f} | {r.profile.train_images_per_s:.0f} | {r.profile.latency_ms:.2f} |"
        for r in rows
    ]
    threads = torch.get_num_threads()
    return "\n".join(
        [
            "# Model comparison",
            "",
            f"Every model trained with the same recipe (`experiment=compare`) on the embedded shapes data at "
            f"{input_size[1]} px; runs in `{sweep_dir}`. Accuracy and macro F1 are on the test split with the "
            f"best validation checkpoint. GMACs: one image, torch's FLOP counter / 2. Train images/s: SGD steps "
            f"on in-memory batches of the run's batch size (no data loading). Latency: median of 10 "
            f"single-image forward passes. Both on the CPU with {threads} threads; compare them within this "
            f"table, not across machines.",
            "",
            header,
            *lines,
            "",
            f"![accuracy against cost]({figure})",
            "",
        ]
    )


def plot(rows: list[Row], path: Path) -> Path:
    """Test accuracy against GMACs and against latency, one labelled point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = [
        ("GMACs per image (log)", lambda r: r.profile.gmacs),
        ("inference latency, ms (log)", lambda r: r.profile.latency_ms),
        ("parameters, M (log)", lambda r: r.profile.params / 1e6),
    ]
    for axis, (label, value) in zip(axes, panels, strict=True):
        for row in rows:
            axis.scatter(value(row), row.test_accuracy, s=60)
            axis.annotate(row.model, (value(row), row.test_accuracy), textcoords="offset points", xytext=(5, 5))
        axis.set_xscale("log")
        axis.set_xlabel(label)
        axis.set_ylabel("test accuracy")
        axis.grid(alpha=0.3)
    figure.suptitle("Model comparison on the embedded shapes data")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(sweep_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    """Profile every run of ``sweep_dir`` and write the markdown table, a JSON copy and the plot."""
    rows = collect(sweep_dir)
    input_size = load_bundle(Path(rows[0].run_dir) / "checkpoints" / "best.pt").input_size
    figure = plot(rows, out_dir / "figures" / "model_comparison.png")
    report = out_dir / "model_comparison.md"
    report.write_text(render_markdown(rows, sweep_dir, input_size, "figures/model_comparison.png"))
    (out_dir / "model_comparison.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return report, figure


def run_multirun(sweep_dir: Path, overrides: list[str]) -> None:
    """Train every model of ``experiment=compare`` in one Hydra multirun into ``sweep_dir``."""
    command = [
        sys.executable, "-m", "image_classifier.train", "--multirun", "experiment=compare",
        f"hydra.sweep.dir={sweep_dir}", *overrides,
    ]  # fmt: skip
    env = {**os.environ, "PROJECT_ROOT": str(project_root())}
    if subprocess.run(command, env=env, check=False).returncode != 0:
        raise UserError(f"The comparison multirun failed; see the output above and {sweep_dir}.")


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. trainer.max_epochs=1")
    parser.add_argument("--out", type=Path, default=project_root() / "reports", help="report directory")
    parser.add_argument("--sweep-dir", type=Path, help="multirun directory (default outputs/compare/multiruns/<time>)")
    parser.add_argument("--report-only", action="store_true", help="report on the finished multirun in --sweep-dir")
    args = parser.parse_args(argv)
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    sweep_dir = args.sweep_dir or project_root() / "outputs" / "compare" / "multiruns" / stamp
    if args.report_only and args.sweep_dir is None:
        raise UserError("--report-only needs --sweep-dir (the finished multirun).")
    if not args.report_only:
        run_multirun(sweep_dir, args.overrides)
    report, figure = write_report(sweep_dir, args.out)
    print(report.read_text())
    print(f"Wrote {report} and {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
