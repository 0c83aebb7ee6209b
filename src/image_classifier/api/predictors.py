"""Models behind the service: a checkpoint bundle in eager PyTorch, or an exported ONNX model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from image_classifier.checkpoint import load_bundle
from image_classifier.errors import CheckpointError
from image_classifier.preprocess import BatchedEvalTransform


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


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class TorchPredictor:
    """A checkpoint bundle run eagerly under ``torch.inference_mode``."""

    backend = "pytorch"

    def __init__(self, path: Path, threads: int = 0) -> None:
        bundle = load_bundle(path)
        if threads:
            torch.set_num_threads(threads)
        self.model = bundle.build_model()
        self.model_name = bundle.model_name
        self.classes = list(bundle.classes)
        self.data_config = dict(bundle.data_config)
        self.lineage = {**bundle.lineage, "epoch": bundle.epoch, "metrics": bundle.metrics, "versions": bundle.versions}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(batch)).softmax(dim=1).numpy()


class OnnxPredictor:
    """An exported ONNX model (see :mod:`image_classifier.export`) run with ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types for unreadable models
            raise CheckpointError(f"Cannot load ONNX model {path}: {str(error).splitlines()[0]}") from error
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = {"classes", "data_config"} - set(meta)
        if missing:
            raise CheckpointError(f"{path} lacks the metadata {sorted(missing)}: export it with `invoke export`.")
        self.model_name = meta.get("model_name", path.stem)
        self.classes = json.loads(meta["classes"])
        self.data_config = json.loads(meta["data_config"])
        self.lineage = json.loads(meta.get("lineage", "{}"))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {self.input_name: batch})
        return _softmax(logits.astype(np.float64)).astype(np.float32)


def pixel_forward(predictor: Predictor) -> Callable[[np.ndarray], np.ndarray]:
    """``predictor`` on stacked uint8 pixels: each batch normalised as evaluation does, then the forward pass."""
    preprocess = BatchedEvalTransform(predictor.data_config)
    return lambda pixels: predictor(preprocess.batch(pixels))


def load_predictor(path: str | Path, threads: int = 0) -> Predictor:
    """A predictor for ``path``: ``.onnx`` files run in ONNX Runtime, anything else is a bundle."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Model not found: {path}")
    if path.suffix == ".onnx":
        return OnnxPredictor(path, threads)
    return TorchPredictor(path, threads)
