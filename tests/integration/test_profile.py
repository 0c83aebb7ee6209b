"""``invoke profile``: torch.profiler over a few real training steps of the quickstart config."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, TINY_DATA_OVERRIDES

PHASES = ("data_wait", "forward", "backward", "optimizer")


def invoke_profile(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "invoke", "profile", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=os.environ.copy())


def test_profile_splits_the_step_lists_operators_and_writes_a_trace(tiny_data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "profile"
    overrides = [*TINY_DATA_OVERRIDES, f"data.root={tiny_data_root}", "data.image_size=32", "trainer.device=cpu"]
    result = invoke_profile("--steps", "3", "--args", f"--warmup 1 --out {out}", " ".join(overrides))
    assert result.returncode == 0, result.stdout + result.stderr

    shares = dict(re.findall(r"^(data_wait|forward|backward|optimizer)\s+[\d.]+\s+([\d.]+)%$", result.stdout, re.M))
    assert set(shares) == set(PHASES), result.stdout
    assert abs(sum(float(share) for share in shares.values()) - 100) < 0.5
    summary = json.loads((out / "profile.json").read_text())
    assert summary["steps"] == 3 and summary["device"] == "cpu"
    assert all(summary["phase_ms"][phase] > 0 for phase in PHASES)
    assert summary["phase_ms"]["backward"] > summary["phase_ms"]["data_wait"] / 100  # a real backward pass ran

    operators = (out / "operators.txt").read_text().splitlines()
    assert "self ms/step" in operators[0] and len(operators) == 16  # header and the top 15
    names = [line.split()[0] for line in operators[1:]]
    assert "aten::convolution_backward" in names and not set(PHASES) & set(names)
    assert operators[1] in result.stdout

    (trace,) = summary["traces"]
    events = json.loads(Path(trace).read_text())["traceEvents"]  # Chrome trace format: Perfetto and TensorBoard
    labels = {event["name"] for event in events if event.get("cat") == "user_annotation"}
    assert set(PHASES) <= labels
    steps = {label for label in labels if label.startswith("ProfilerStep#")}
    assert len(steps) == 3, "only the active steps are in the trace, not the wait and warm-up ones"


def test_a_bad_profile_option_is_one_error_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "image_classifier.profile", "--steps", "0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    expected = "error: --steps and --top must be at least 1, --warmup and --wait at least 0."
    assert result.stderr.strip().splitlines() == [expected]


def test_a_bad_training_override_is_one_error_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "image_classifier.profile", "--out", str(tmp_path), "trainer.precision=64"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "precision" in line
