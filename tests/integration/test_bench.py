"""``python -m image_classifier.bench``: records against the compute ceiling, and a clean skip without real photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

FIELDS = ("case", "phase", "img_size", "batch_size", "ceiling_img_s", "measured_img_s", "ratio", "peak_rss_mb")


def test_quick_bench_writes_records_and_skips_missing_real_photos(tmp_path: Path) -> None:
    out = tmp_path / "reports"
    command = [sys.executable, "-m", "image_classifier.bench", "--quick", "--out", str(out)]
    command += ["--work", str(tmp_path / "work"), "--shared-data", str(tmp_path / "absent")]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    assert "Skipping the real-photo cases" in done.stdout
    records = json.loads((out / "bench.json").read_text())
    assert {(r["case"], r["phase"]) for r in records} == {("shapes", "train"), ("shapes", "eval")}
    for record in records:
        assert all(record[key] is not None for key in FIELDS)
        assert record["img_size"] == 32 and record["peak_rss_mb"] > 0
        assert record["ratio"] == pytest.approx(record["measured_img_s"] / record["ceiling_img_s"], abs=0.01)
    assert "ceiling img/s" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == ["bench.json"]
