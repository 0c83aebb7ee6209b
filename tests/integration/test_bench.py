"""``python -m image_classifier.bench``: records against the compute ceiling, the accuracy record (cached vs JPEG),
and a clean skip without real photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from image_classifier.bench.accuracy import accuracy_warning, compare_accuracy
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
    """The quick accuracy record: one seed per path, accuracies in [0, 1], the delta their difference, wall times."""
    assert record["seeds"] == [42]
    for key in ("cached_test_accuracy", "jpeg_test_accuracy", "cached_val_accuracy", "jpeg_val_accuracy"):
        assert 0.0 <= record[key] <= 1.0, key
    assert record["cached_test_accuracies"] == [pytest.approx(record["cached_test_accuracy"])]
    assert record["cached_test_spread"] == 0
    delta = record["cached_test_accuracy"] - record["jpeg_test_accuracy"]
    assert record["delta_split"] == "test" and record["accuracy_delta"] == pytest.approx(delta, abs=1e-6)
    assert record["within_tolerance"] is (delta >= -0.01) and record["regression"] is False  # one seed: no verdict
    assert record["cached_wall_s"] > 0 and record["jpeg_wall_s"] > 0
    assert record["wall_ratio"] == pytest.approx(record["cached_wall_s"] / record["jpeg_wall_s"], abs=0.01)
    assert record["img_size"] == 32 and record["epochs"] == 1 and record["dataset"] == "shapes"
    assert "trainer.deterministic=true" in record["overrides"] and "data.cache=false" not in record["overrides"]
    assert record["jpeg_overrides"] == [*record["overrides"], "data.cache=false"]


def _runs(test: list[float], val: float = 0.7) -> list[tuple[dict[str, float], float]]:
    return [({"test/accuracy": t, "val/accuracy": val}, 3.0) for t in test]


@pytest.mark.parametrize(
    ("cached", "regression"),
    [([0.80, 0.81, 0.79], False), ([0.79, 0.80, 0.795], False), ([0.77, 0.80, 0.77], True)],
)
def test_accuracy_comparison_fails_only_when_the_mean_falls_beyond_the_tolerance(
    cached: list[float], regression: bool
) -> None:
    jpeg = [0.80, 0.79, 0.81]
    record = compare_accuracy({"cached": _runs(cached), "jpeg": _runs(jpeg)})
    mean = sum(cached) / 3
    assert record["accuracy_delta"] == pytest.approx(mean - 0.80) and record["wall_ratio"] == 1.0
    assert record["cached_test_accuracies"] == cached and record["cached_test_spread"] > 0
    assert record["regression"] is regression and record["within_tolerance"] is not regression
    warning = accuracy_warning({"case": "shapes", "seeds": [1, 2, 3], **record})
    assert (warning is not None) is regression
    if warning is not None:
        assert warning.startswith("accuracy regression") and f"{mean:.3f} vs 0.800" in warning


def test_one_seed_below_the_tolerance_warns_without_a_verdict() -> None:
    record = compare_accuracy({"cached": _runs([0.70]), "jpeg": _runs([0.80])})
    assert record["within_tolerance"] is False and record["regression"] is False
    warning = accuracy_warning({"case": "shapes", "seeds": [42], **record})
    assert warning is not None and "not a verdict" in warning
