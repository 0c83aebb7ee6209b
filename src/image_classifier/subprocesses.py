"""Running a command whose failure is the user's to fix: one line, the command's own last word on it."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from image_classifier.errors import UserError


def last_line(*outputs: str) -> str:
    """The last line of the first of ``outputs`` that holds any text; ``""`` when none does."""
    for output in outputs:
        if output.strip():
            return output.strip().splitlines()[-1].strip()
    return ""


def failure_reason(returncode: int, *outputs: str) -> str:
    """Why a command failed: the last line it wrote (``outputs`` in order of preference), else its exit status."""
    return last_line(*outputs) or f"exit {returncode}"


def run_checked(
    command: Sequence[str | Path],
    failure: str,
    *,
    error: type[UserError] = UserError,
    **options: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with its output captured as text; a non-zero exit raises ``error`` as ``"{failure}: {why}"``,
    ``why`` being the last line of its stderr, else of its stdout, else its exit status. ``options`` go to
    :func:`subprocess.run` (``cwd``, ``timeout``, ``input``, ``env``)."""
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, errors="replace", check=False, **options
    )
    if done.returncode != 0:
        raise error(f"{failure}: {failure_reason(done.returncode, done.stderr, done.stdout)}")
    return done
