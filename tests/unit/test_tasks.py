"""invoke tasks pass quoted Hydra overrides through to the entry points."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

INVOKE = str(Path(sys.executable).with_name("invoke"))


def _dry(*args: str) -> str:
    result = subprocess.run([INVOKE, "--dry", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train"], "-m image_classifier.train"),
        (["train", "model=timm trainer.max_epochs=3"], "-m image_classifier.train model=timm trainer.max_epochs=3"),
        (["train", "--nproc", "2", "logger=none"], "--nproc_per_node=2 -m image_classifier.train logger=none"),
        (["evaluate", "checkpoint=x.pt split=val"], "-m image_classifier.evaluate checkpoint=x.pt split=val"),
    ],
)
def test_overrides_reach_the_entry_point(args: list[str], expected: str) -> None:
    command = re.sub(r"\x1b\[[0-9;]*m", "", _dry(*args)).strip()
    assert command.endswith(expected)
