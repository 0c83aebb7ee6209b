"""Start-up rows: seconds from ``invoke train`` to its first training step, read against ``import torch, timm``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from image_classifier.bench.record import BenchRecord
from image_classifier.project import project_root

FIRST_STEP_MARK = b"loss="
STARTUP_GOAL_S = 2.0
"""The first training step should come at most this long after ``import torch, timm`` would have finished."""


def import_seconds(modules: str = "torch, timm", timeout: float = 600) -> float | None:
    """Seconds from launching a fresh ``python -c "import torch, timm"`` to the end of its imports."""
    code = f"import time; import {modules}; print(time.time())"
    start = time.time()  # wall clock: the child reads the same clock when its imports are done
    try:
        command = [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=project_root(), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    return round(float(done.stdout.split()[-1]) - start, 2) if done.returncode == 0 else None


def first_step_seconds(overrides: str, run_dir: Path, timeout: float = 600) -> float | None:
    """Seconds from launching ``invoke train`` to its first finished training step (its first loss on the bar)."""
    extra = [*overrides.split(), "logger=none", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}"]
    command = [sys.executable, "-m", "invoke", "train", "--", *extra]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=project_root(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    assert process.stderr is not None
    seen = b""
    try:
        while time.perf_counter() - start < timeout:
            chunk = os.read(process.stderr.fileno(), 65536)
            if not chunk:
                return None
            seen = seen[-64:] + chunk
            if FIRST_STEP_MARK in seen:
                return round(time.perf_counter() - start, 2)
        return None
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()


def startup_record(label: str, first_step_s: float | None, import_s: float | None) -> BenchRecord:
    """One start-up record: seconds to the first step, to the end of ``import torch, timm``, and between them."""
    after = round(first_step_s - import_s, 2) if first_step_s is not None and import_s is not None else None
    details = {
        "first_step_s": first_step_s,
        "import_torch_timm_s": import_s,
        "first_step_after_import_s": after,
        "first_step_goal_s": STARTUP_GOAL_S,
    }
    return BenchRecord(f"invoke train -> first step ({label})", "train", details=details)


def startup_records(data_root: Path, scratch: Path) -> list[BenchRecord]:
    """Time from ``invoke train`` to the first step: with the data generated and cached, and from nothing.

    Each is measured just after a fresh ``import torch, timm``, whose time is the floor it is read against.
    """
    records: list[BenchRecord] = []
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for label, root in (
        ("warm: data generated and cached", data_root / "shapes"),
        ("cold: fresh data root", scratch / "cold"),
    ):
        import_s = import_seconds()
        seconds = first_step_seconds(f"data.root={root}", scratch / f"run-{len(records)}")
        records.append(startup_record(label, seconds, import_s))
    return records
