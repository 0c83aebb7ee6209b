"""Model comparison: profiles are right, the report and plot come from real runs, `compare` runs the multirun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from image_classifier.compare import profile_model, write_report
from image_classifier.train import train
from tests.conftest import REPO_ROOT, TINY_DATA_OVERRIDES, TINY_OVERRIDES, ComposeFn

MODELS = ("baseline_cnn", "convnextv2_atto", "mobilenetv3_small_050", "resnet18", "vgg11")


def test_profile_counts_parameters_and_macs_exactly() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 8 * 8, 2, bias=False))
    profile = profile_model(model, (3, 8, 8), batch_size=4)
    assert profile.params == 3 * 8 * 9 + 512 * 2
    assert profile.gmacs == pytest.approx((3 * 9 * 8 * 64 + 512 * 2) / 1e9)
    assert profile.train_images_per_s > 0 and profile.latency_ms > 0


def test_report_and_plot_from_a_real_run(compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    overrides = [*TINY_OVERRIDES, f"data.root={tiny_data_root}", "model.kwargs.width=8"]
    metrics = train(compose_config("train", overrides, output_dir=sweep / "0"))
    report, figure = write_report(sweep, tmp_path / "reports")
    text = report.read_text()
    assert f"| baseline_cnn | {metrics['test/accuracy']:.4f} | {metrics['test/f1_macro']:.4f} |" in text
    assert "GMACs" in text and "latency" in text and figure.stat().st_size > 10_000


@pytest.mark.slow
def test_compare_runs_five_architectures_and_writes_the_table_and_plot(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "image_classifier.compare", "--out", str(tmp_path / "reports"),
        "--sweep-dir", str(tmp_path / "sweep"), "trainer.max_epochs=1", "logger=none", "trainer.device=cpu",
        f"data.root={tmp_path / 'data'}", *TINY_DATA_OVERRIDES,
    ]  # fmt: skip
    env = {**os.environ, "PROJECT_ROOT": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "reports" / "model_comparison.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert sorted(row.split(" | ")[0].removeprefix("| ") for row in rows) == sorted(MODELS)
    assert (tmp_path / "reports" / "figures" / "model_comparison.png").stat().st_size > 10_000
