"""An exported ONNX model (see :mod:`image_classifier.export`) run with ONNX Runtime: no torch, timm or torchvision.

The model file carries what serving needs as metadata (classes, data config, lineage), so it is served alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from image_classifier.errors import CheckpointError

REQUIRED_METADATA = ("classes", "data_config")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(N, K)`` logits, computed in float64 and returned as float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


class OnnxPredictor:
    """Maps a float32 batch ``(N, C, H, W)`` of preprocessed images to class probabilities with ONNX Runtime."""

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
        missing = [key for key in REQUIRED_METADATA if key not in meta]
        if missing:
            raise CheckpointError(f"{path} lacks the metadata {missing}: export it with `invoke export`.")
        self.model_name = meta.get("model_name", path.stem)
        self.classes = json.loads(meta["classes"])
        self.data_config = json.loads(meta["data_config"])
        self.lineage = json.loads(meta.get("lineage", "{}"))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {self.input_name: batch})
        return softmax(logits)
