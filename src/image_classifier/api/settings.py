"""Serving settings, read from the environment by pydantic-settings."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from image_classifier.errors import ConfigError

ENV_PREFIX = "IC_"

# What a valid value is, by pydantic error type (``{ge}``/``{le}`` come from the error's context).
VALID = {
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "int_type": "is not an integer",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "finite_number": "is not a finite number",
    "bool_parsing": "is not a boolean (true/false, 1/0)",
    "bool_type": "is not a boolean (true/false, 1/0)",
    "greater_than_equal": "must be at least {ge:g}",
    "less_than_equal": "must be at most {le:g}",
    "greater_than": "must be more than {gt:g}",
    "string_pattern_mismatch": "is not a SHA-256 digest (64 hex digits)",
}


class ServeSettings(BaseSettings):
    """What the service loads, the limits it enforces, and the port it listens on.

    Environment: ``MODEL_PATH`` (a checkpoint bundle or an ``.onnx`` export) or ``MODEL_URI`` (``file://``,
    ``https://``, ``gs://`` or a registry reference such as ``gto:NAME#prod``, fetched at start into
    ``IC_MODEL_CACHE``; it wins over ``MODEL_PATH``), ``MODEL_SHA256`` (the model file's checksum),
    ``IC_MODEL_FETCH_TIMEOUT`` (seconds per network operation), ``IC_MODEL_REGISTRY`` (the git repository of
    registry references; default the current directory), ``PORT`` (8000), ``IC_MAX_BATCH``,
    ``IC_MAX_WAIT_MS``, ``IC_MAX_FILES``, ``IC_MAX_UPLOAD_BYTES`` (per file), ``IC_MAX_REQUEST_BYTES``,
    ``IC_MAX_PIXELS`` (per image), ``IC_MAX_ASPECT_RATIO`` (long side over short side, which bounds the resize),
    ``IC_MAX_REQUEST_PIXELS`` (all images of a request), ``IC_MAX_QUEUE`` (images admitted and not yet answered;
    past it a request is answered 503 at once), ``IC_RETRY_AFTER_S`` (the ``Retry-After`` of that 503),
    ``IC_PREDICTION_LOG`` (JSON-lines path; empty disables it), ``IC_THREADS``, ``IC_MODEL_PROCESS`` (run the
    model in a child process; default true). An empty variable means its default.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True, populate_by_name=True, protected_namespaces=()
    )

    model_path: str = Field("", validation_alias="MODEL_PATH")
    model_uri: str = Field("", validation_alias="MODEL_URI")
    model_sha256: str = Field("", validation_alias="MODEL_SHA256", pattern=r"^([0-9a-fA-F]{64})?$")
    model_cache: str = ""
    model_fetch_timeout: float = Field(60.0, gt=0, allow_inf_nan=False)
    model_registry: str = "."
    port: int = Field(8000, validation_alias="PORT", ge=1, le=65535)
    max_batch: int = Field(16, ge=1)
    max_wait_ms: float = Field(5.0, ge=0, allow_inf_nan=False)
    max_files: int = Field(32, ge=1)
    max_upload_bytes: int = Field(10 * 2**20, ge=1)
    max_request_bytes: int = Field(64 * 2**20, ge=1)
    max_pixels: int = Field(4096 * 4096, ge=1)
    max_aspect_ratio: float = Field(20.0, ge=1, allow_inf_nan=False)
    max_request_pixels: int = Field(4 * 4096 * 4096, ge=1)
    max_queue: int = Field(64, ge=1)
    retry_after_s: int = Field(1, ge=0)
    prediction_log: str = ""
    threads: int = Field(0, ge=0)
    model_process: bool = True

    @field_validator("model_process", "model_uri", "model_sha256", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @classmethod
    def from_env(cls, **overrides: Any) -> ServeSettings:
        """The settings from the environment, with command-line ``overrides`` on top (``max_batch`` for
        ``--max-batch``; ``None`` means not given). A bad value is one :class:`ConfigError` line that names
        its variable (or flag), the value and what is valid."""
        given = {name: value for name, value in overrides.items() if value is not None}
        try:
            return cls(**given)
        except ValidationError as error:
            raise ConfigError("; ".join(_describe(detail, given) for detail in error.errors()) + ".") from None

    def require_model(self) -> str:
        """What to serve: ``MODEL_URI`` when set (fetched at start), else ``MODEL_PATH``."""
        if self.model_uri:
            return self.model_uri
        if not self.model_path:
            raise ConfigError("MODEL_PATH is not set: point it at a checkpoint bundle (best.pt) or an exported .onnx.")
        return self.model_path


def env_name(field: str) -> str:
    """The environment variable of a :class:`ServeSettings` field."""
    alias = ServeSettings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"{ENV_PREFIX}{field.upper()}"


def _describe(detail: ErrorDetails, given: dict[str, Any]) -> str:
    """``NAME='value' what-is-valid`` for one validation error."""
    key = str(detail["loc"][0]) if detail["loc"] else "settings"
    fields = {env_name(field): field for field in ServeSettings.model_fields}
    fields |= {field: field for field in ServeSettings.model_fields}
    field = fields.get(key)
    name = key if field is None else f"--{field.replace('_', '-')}" if field in given else env_name(field)
    valid = VALID.get(detail["type"], "is not valid: {msg}").format(**detail.get("ctx", {}), msg=detail["msg"])
    return f"{name}={detail['input']!r} {valid}"
