"""Models behind the service: a checkpoint bundle in eager PyTorch (:class:`TorchPredictor`), or an exported ONNX
model (:class:`~image_classifier.api.onnx_backend.OnnxPredictor`); :mod:`~image_classifier.api.backends` picks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from image_classifier.api.backends import ModelInfo, Predictor, load_predictor, pixel_forward
from image_classifier.api.onnx_backend import OnnxPredictor
from image_classifier.checkpoint import load_bundle

__all__ = ["ModelInfo", "OnnxPredictor", "Predictor", "TorchPredictor", "load_predictor", "pixel_forward"]


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
