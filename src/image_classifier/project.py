"""Where the project lives: the directory holding ``configs/``, ``models/`` and ``reports/`` (standard library only)."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The directory holding ``configs/``: ``$PROJECT_ROOT``, the source checkout, or the cwd."""
    if "PROJECT_ROOT" in os.environ:
        return Path(os.environ["PROJECT_ROOT"]).resolve()
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "configs").is_dir() else Path.cwd().resolve()
