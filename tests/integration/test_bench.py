"""``python -m image_classifier.bench``: records against the compute ceiling, the accuracy record (cached vs JPEG),
and a clean skip without real photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from image_classifier.bench.suite import accuracy_warning, compare_accuracy
from tests.conftest import REPO_ROOT

FIELDS = ("case", "phase", "img_size", "batch_size", "ceiling_img_s", "measured_img_s", "ratio", "peak_rss_mb")


def _quick_bench(tmp_path: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    out = tmp_path / "reports"
    command = [sys.executable, "-m", "image_classifier.bench", "--quick", "--out", str(out), *extra]
    command += ["--work", str(tmp_path / "work"), "--shared-data", str(tmp_path / "absent")]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["bench.json"]
    return done, json.loads((out / "bench.json").read_text())


def test_quick_bench_writes_records_and_skips_missing_real_photos(tmp_path: Path) -> None:
    done, records = _quick_bench(tmp_path, "--no-accuracy")
    assert "Skipping the real-photo cases" in done.stdout
    assert {(r["case"], r["phase"]) for r in records} == {("shapes", "train"), ("shapes", "eval")}
    for record in records:
        assert all(record[key] is not None for key in FIELDS)
        assert record["img_size"] == 32 and record["peak_rss_mb"] > 0
        assert record["ratio"] == pytest.approx(record["measured_img_s"] / record["ceiling_img_s"], abs=0.01)
    assert "ceiling img/s" in done.stdout


@pytest.mark.slow
def test_quick_bench_records_cached_and_jpeg_accuracy(tmp_path: Path) -> None:
    done, records = _quick_bench(tmp_path)
    (accuracy,) = [r for r in records if r["phase"] == "accuracy"]
    assert_accuracy_record(accuracy)
    assert "Accuracy: default pipeline" in done.stdout


def assert_accuracy_record(record: dict[str, Any]) -> None:
    """The quick accuracy record: both runs' accuracies in [0, 1], the delta their difference, both wall times."""
    for key in ("cached_test_accuracy", "jpeg_test_accuracy", "cached_val_accuracy", "jpeg_val_accuracy"):
        assert 0.0 <= record[key] <= 1.0, key
    delta = record["cached_test_accuracy"] - record["jpeg_test_accuracy"]
    assert record["delta_split"] == "test" and record["accuracy_delta"] == pytest.approx(delta, abs=1e-6)
    assert record["within_tolerance"] is (delta >= -0.01)
    assert record["cached_wall_s"] > 0 and record["jpeg_wall_s"] > 0
    assert record["wall_ratio"] == pytest.approx(record["cached_wall_s"] / record["jpeg_wall_s"], abs=0.01)
    assert record["img_size"] == 32 and record["epochs"] == 1 and record["dataset"] == "shapes"
    assert "trainer.deterministic=true" in record["overrides"] and "data.cache=false" not in record["overrides"]
    assert record["jpeg_overrides"] == [*record["overrides"], "data.cache=false"]


@pytest.mark.parametrize(("cached", "regression"), [(0.80, False), (0.795, False), (0.78, True)])
def test_accuracy_comparison_warns_only_beyond_the_tolerance(cached: float, regression: bool) -> None:
    record = compare_accuracy(
        {"test/accuracy": cached, "val/accuracy": 0.7}, {"test/accuracy": 0.80, "val/accuracy": 0.72}, 3.0, 6.0
    )
    assert record["accuracy_delta"] == pytest.approx(cached - 0.80) and record["wall_ratio"] == 0.5
    assert record["within_tolerance"] is not regression
    warning = accuracy_warning({"case": "shapes", **record})
    assert (warning is not None) is regression
    if warning is not None:
        assert "accuracy regression" in warning and "0.780 vs 0.800" in warning
