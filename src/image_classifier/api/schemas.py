"""Response bodies of the API (they define its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    model: str
    backend: str


class Metadata(BaseModel):
    model: str
    backend: str = Field(description="pytorch (a checkpoint bundle) or onnxruntime (an ONNX export)")
    classes: list[str]
    input_size: list[int] = Field(description="channels, height, width")
    mean: list[float]
    std: list[float]
    interpolation: str
    crop_pct: float
    lineage: dict[str, Any] = Field(description="git commit, data fingerprint, run, metrics, library versions")
    limits: dict[str, float] = Field(
        description="max_batch, max_wait_ms, max_files, max_upload_bytes, max_pixels, max_aspect_ratio, "
        "max_request_pixels, max_queue"
    )


class Prediction(BaseModel):
    filename: str
    label: str
    confidence: float = Field(ge=0, le=1)
    top_k: dict[str, float] = Field(description="class name to probability, most likely first")


class PredictResponse(BaseModel):
    model: str
    predictions: list[Prediction]


class ErrorResponse(BaseModel):
    detail: Any = Field(description="what was wrong with the request")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Undecodable, truncated or empty image; too many files"},
    413: {
        "model": ErrorResponse,
        "description": "Upload too large; too many pixels in an image or in the request; aspect ratio too extreme",
    },
    415: {"model": ErrorResponse, "description": "Not an image media type"},
    422: {"model": ErrorResponse, "description": "Missing or invalid field"},
    503: {
        "model": ErrorResponse,
        "description": "At the limit of images in progress (with Retry-After), the model process exited, "
        "or the server is stopping",
    },
}
