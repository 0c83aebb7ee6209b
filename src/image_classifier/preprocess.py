"""The evaluation preprocessing, rebuilt from a bundle's data config alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data import create_transform
from torchvision import transforms
from torchvision.transforms import functional as tf

from image_classifier.errors import ConfigError

ImageOp = Callable[[Image.Image], Image.Image]


def eval_transform(data_config: dict[str, Any]) -> Any:
    """Resize, centre-crop (``crop_pct``), to tensor and normalise, exactly as evaluation does."""
    return create_transform(
        input_size=tuple(data_config["input_size"]),
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        crop_pct=data_config.get("crop_pct", 1.0),
        crop_mode=data_config.get("crop_mode", "center"),
        is_training=False,
    )


class Normalize:
    """uint8 batch -> float32 in [0, 1] -> (x - mean) / std, with the arithmetic of ``to_tensor`` + ``Normalize``.

    Applied to a batch it gives bit-identical results to the per-image eval transform.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.to(dtype=torch.float32).div(255)
        return tf.normalize(images, self.mean, self.std, inplace=True)


def split_eval_transform(transform: transforms.Compose) -> tuple[ImageOp, Normalize] | None:
    """The PIL resize/crop part of an eval transform and its normalisation, or None if it is not that shape."""
    ops = list(transform.transforms)
    names = [type(op).__name__ for op in ops]
    if len(ops) < 2 or names[-2] not in ("ToTensor", "MaybeToTensor") or names[-1] != "Normalize":
        return None
    norm = ops[-1]
    return transforms.Compose(ops[:-2]), Normalize(norm.mean.tolist(), norm.std.tolist())


def resized_pixels(image: Image.Image, resize: ImageOp) -> np.ndarray:
    """``resize`` applied to an RGB image, as uint8 C x H x W: what the caches store and the API batches."""
    return np.asarray(resize(image), dtype=np.uint8).transpose(2, 0, 1)


class BatchedEvalTransform:
    """``eval_transform`` in two halves: each image resized and cropped to uint8 pixels, then a batch normalised.

    Normalising the stacked pixels gives the same tensors, bit for bit, as the per-image transform
    (see :class:`Normalize`); the serving API uses it so that
    per-request work is only the decode, resize and crop.
    """

    def __init__(self, data_config: dict[str, Any]) -> None:
        parts = split_eval_transform(eval_transform(data_config))
        if parts is None:
            raise ConfigError(f"The evaluation transform for {data_config} does not end in to-tensor + normalise.")
        self.resize, self.normalize = parts

    def pixels(self, image: Image.Image) -> np.ndarray:
        """One RGB image, resized and cropped: uint8 C x H x W."""
        return resized_pixels(image, self.resize)

    def batch(self, pixels: np.ndarray) -> np.ndarray:
        """Stacked :meth:`pixels` (uint8 N x C x H x W) as the model's float32 input."""
        return self.normalize(torch.from_numpy(np.ascontiguousarray(pixels))).numpy()
