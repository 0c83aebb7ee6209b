"""Training starts fast: importing the training entry point loads nothing it needs only later.

Tracking (wandb), figures (matplotlib), metrics (torchmetrics, which loads scipy and matplotlib),
ONNX export and the API's stack are imported where they are used, not when the training
process starts. The baseline is what ``import torch, timm`` loads by itself: timm imports
wandb when it is installed, which this project cannot avoid.
"""

from __future__ import annotations

import json
import subprocess
import sys

from image_classifier.bench.report import startup_note
from image_classifier.bench.startup import import_seconds, startup_record
from tests.conftest import REPO_ROOT

DEFERRED = ("wandb", "matplotlib", "scipy", "torchmetrics", "onnx", "onnxruntime", "fastapi", "uvicorn")

PROBE = f"""
import json, sys
import torch, timm
baseline = set(sys.modules)
import image_classifier.train
print(json.dumps(sorted(m for m in {DEFERRED!r} if m in sys.modules and m not in baseline)))
"""


def test_importing_the_training_entry_point_defers_what_it_needs_later() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_bench_reads_the_first_step_against_the_import_floor() -> None:
    floor = import_seconds("json")
    assert floor is not None and 0 < floor < 60
    record = startup_record("warm", first_step_s=7.5, import_s=6.0)
    assert record.details["first_step_after_import_s"] == 1.5 and record.details["import_torch_timm_s"] == 6.0
    assert "1.5 s[/] after import torch, timm (6.0 s; goal <= 2 s)" in startup_note(record)
    assert startup_record("warm", first_step_s=None, import_s=6.0).details["first_step_after_import_s"] is None
