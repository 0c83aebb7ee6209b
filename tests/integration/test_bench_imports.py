"""The import benchmark's machinery on a few photos: records, memory samples and the goal lines (no speed asserted)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_import_benchmark_records_rates_and_memory(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "image_classifier.bench.imports",
        "--work",
        str(tmp_path),
        "--sizes",
        "100,200",
        "--rounds",
        "1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    records = json.loads((tmp_path / "imports.json").read_text())
    assert [(r["images"], r.get("reference", False)) for r in records] == [
        (100, False),
        (200, False),
        (100, True),
        (200, True),
    ]
    assert [r["workers"] for r in records[2:]] == [1, 1]
    for record in records:
        assert record["photos_per_s"] > 0 and record["peak_rss_mb"] > 10 and record["peak_pss_mb"] > 10
    assert "peak memory 200 vs 100 photos" in done.stdout
    assert re.search(r"100 photos, \d+ processes vs 1: x[\d.]+ photos/s \(goal x1.5: not judged", done.stdout)
    assert re.search(r"200 photos, \d+ processes vs 1: x[\d.]+ photos/s \(goal x1.5: (met|missed)", done.stdout)
