"""Which backend serves a model file, and its preprocessing, chosen without importing torch.

An ONNX export runs in ONNX Runtime with the Pillow + numpy evaluation transform
(:mod:`~image_classifier.api.eval_transform`): serving it imports no torch, timm or torchvision, so it also runs
from the slim install (``serving/``). Anything else is a checkpoint bundle, run in eager PyTorch
(:mod:`~image_classifier.api.predictors`, imported only then) with timm's evaluation transform.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from image_classifier.errors import CheckpointError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive
BUNDLE_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin"})
TORCH_STACK = ("torch", "timm", "torchvision")


class ModelInfo(Protocol):
    """What a served model is: its backend, name, classes, preprocessing and lineage."""

    backend: str
    model_name: str
    classes: list[str]
    data_config: dict[str, Any]
    lineage: dict[str, Any]


class Predictor(ModelInfo, Protocol):
    """Maps a float32 batch ``(N, C, H, W)`` of preprocessed images to class probabilities ``(N, K)``."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class Preprocess(Protocol):
    """The evaluation transform in two halves: one image to uint8 pixels, a stack of them to model input."""

    def pixels(self, image: Image.Image) -> np.ndarray: ...

    def batch(self, pixels: np.ndarray) -> np.ndarray: ...


def is_onnx(path: Path) -> bool:
    """Whether ``path`` is an ONNX export: named ``.onnx``, or (a file from a content-addressed cache, which has
    no suffix) not a zip archive as every bundle is."""
    if path.suffix == ".onnx":
        return True
    if path.suffix in BUNDLE_SUFFIXES:
        return False
    with open(path, "rb") as handle:
        return handle.read(len(ZIP_MAGIC)) != ZIP_MAGIC


def load_predictor(path: str | Path, threads: int = 0) -> Predictor:
    """A predictor for ``path``: ONNX exports run in ONNX Runtime, anything else is a bundle."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Model not found: {path}")
    if is_onnx(path):
        from image_classifier.api.onnx_backend import OnnxPredictor

        return OnnxPredictor(path, threads)
    try:
        from image_classifier.api.predictors import TorchPredictor
    except ImportError as error:
        if error.name not in TORCH_STACK:
            raise
        raise CheckpointError(
            f"{path} is a checkpoint bundle, and this install has no PyTorch ({error.name} is missing): it serves "
            "ONNX exports only. Export the bundle (invoke export) or serve it with the full image."
        ) from None
    return TorchPredictor(path, threads)


def eval_preprocess(model: ModelInfo) -> Preprocess:
    """The evaluation transform for ``model``: Pillow + numpy for ONNX Runtime, timm's for PyTorch."""
    if model.backend == "onnxruntime":
        from image_classifier.api.eval_transform import EvalTransform

        return EvalTransform(model.data_config)
    from image_classifier.preprocess import BatchedEvalTransform

    return BatchedEvalTransform(model.data_config)


def pixel_forward(predictor: Predictor) -> Callable[[np.ndarray], np.ndarray]:
    """``predictor`` on stacked uint8 pixels: each batch normalised as evaluation does, then the forward pass."""
    preprocess = eval_preprocess(predictor)
    return lambda pixels: predictor(preprocess.batch(pixels))
