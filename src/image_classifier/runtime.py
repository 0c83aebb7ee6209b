"""Process-level set-up: device choice, precision, seeding, stopping children."""

from __future__ import annotations

import logging
import os
import random
import subprocess
from typing import Any

import numpy as np
import torch

from image_classifier.errors import ConfigError

log = logging.getLogger(__name__)


def select_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; a forced device must exist."""
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": has_mps}
    if name not in available:
        raise ConfigError(f"trainer.device={name} is not one of auto, cpu, cuda, mps.")
    if not available[name]:
        raise ConfigError(f"trainer.device={name} but {name} is not available here; use trainer.device=auto or cpu.")
    return torch.device(name)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bf16 autocast speeds it up."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def usable_precision(precision: str, device: torch.device) -> str:
    """``precision``, except ``bf16-mixed`` on a CPU without native bfloat16, where it is emulated and slower than
    float32: then ``32``, with a warning."""
    if precision == "bf16-mixed" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("trainer.precision=bf16-mixed: this CPU has no native bfloat16 (AVX512-BF16/AMX); training in 32")
        return "32"
    return precision


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed python, numpy and torch; with ``deterministic`` also force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def stop_process(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """SIGTERM ``process`` (a server shuts down cleanly on it), then SIGKILL if it is not gone in ``timeout`` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
