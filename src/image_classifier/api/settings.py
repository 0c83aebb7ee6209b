"""Serving settings, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

from image_classifier.errors import ConfigError


def _env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer.") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}.")
    return value


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number.") from None
    if value < 0:
        raise ConfigError(f"{name}={value} must not be negative.")
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (true/false, 1/0).")


@dataclass(frozen=True)
class ServeSettings:
    """What the service loads and the limits it enforces.

    Environment: ``MODEL_PATH`` (a checkpoint bundle or an ``.onnx`` export), ``IC_MAX_BATCH``,
    ``IC_MAX_WAIT_MS``, ``IC_MAX_FILES``, ``IC_MAX_UPLOAD_BYTES`` (per file), ``IC_MAX_REQUEST_BYTES``,
    ``IC_MAX_PIXELS``, ``IC_PREDICTION_LOG`` (JSON-lines path; empty disables it), ``IC_THREADS``,
    ``IC_MODEL_PROCESS`` (run the model in a child process; default true).
    """

    model_path: str
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_files: int = 32
    max_upload_bytes: int = 10 * 2**20
    max_request_bytes: int = 64 * 2**20
    max_pixels: int = 4096 * 4096
    prediction_log: str = ""
    threads: int = 0
    model_process: bool = True

    def require_model(self) -> str:
        if not self.model_path:
            raise ConfigError("MODEL_PATH is not set: point it at a checkpoint bundle (best.pt) or an exported .onnx.")
        return self.model_path

    @classmethod
    def from_env(cls) -> ServeSettings:
        return cls(
            model_path=os.environ.get("MODEL_PATH", ""),
            max_batch=_env_int("IC_MAX_BATCH", cls.max_batch),
            max_wait_ms=_env_float("IC_MAX_WAIT_MS", cls.max_wait_ms),
            max_files=_env_int("IC_MAX_FILES", cls.max_files),
            max_upload_bytes=_env_int("IC_MAX_UPLOAD_BYTES", cls.max_upload_bytes),
            max_request_bytes=_env_int("IC_MAX_REQUEST_BYTES", cls.max_request_bytes),
            max_pixels=_env_int("IC_MAX_PIXELS", cls.max_pixels),
            prediction_log=os.environ.get("IC_PREDICTION_LOG", ""),
            threads=_env_int("IC_THREADS", 0, minimum=0),
            model_process=_env_bool("IC_MODEL_PROCESS", cls.model_process),
        )
