"""timm's evaluation transform in Pillow and numpy, for serving without torch, timm or torchvision.

:class:`EvalTransform` rebuilds, from a data config alone (``input_size``, ``interpolation``, ``crop_pct``,
``crop_mode``, ``mean``, ``std``), what ``timm.data.create_transform(..., is_training=False)`` does: resize
(the shorter side to ``size / crop_pct``, with the config's Pillow filter), centre-crop to ``input_size``,
scale to [0, 1] and normalise. The same Pillow calls give the same uint8 pixels; the float32 arithmetic is
``ToTensor`` + ``Normalize``'s, so the tensors match too (tests/serve/test_eval_transform.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from image_classifier.errors import ConfigError

# timm's names for Pillow's filters (timm.data.transforms.str_to_pil_interp).
FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}
CROP_MODES = ("center", "squash", "border")
DEFAULT_CROP_PCT = 0.875  # timm's, used when a config's crop_pct is 0


def shorter_side_size(width: int, height: int, short: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side scaled to ``short``, as torchvision's ``Resize(int)``."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def keep_ratio_size(width: int, height: int, target: tuple[int, int], longest: float) -> tuple[int, int]:
    """``(width, height)`` scaled to fit ``target`` (height, width) as timm's ``ResizeKeepRatio`` does (a side
    that would round to 0 pixels, where timm fails, is 1)."""
    ratio_h, ratio_w = height / target[0], width / target[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return max(1, round(width / ratio)), max(1, round(height / ratio))


def center_crop(image: Image.Image, height: int, width: int, fill: tuple[int, ...] = (0, 0, 0)) -> Image.Image:
    """The centre ``height`` x ``width`` of ``image``, padded with ``fill`` where it is smaller (as torchvision's
    ``center_crop`` and timm's ``CenterCropOrPad``)."""
    if width > image.width or height > image.height:
        pad_w, pad_h = max(width - image.width, 0), max(height - image.height, 0)
        padded = Image.new(image.mode, (image.width + pad_w, image.height + pad_h), fill)
        padded.paste(image, (pad_w // 2, pad_h // 2))
        image = padded
        if (image.width, image.height) == (width, height):
            return image
    top = round((image.height - height) / 2.0)
    left = round((image.width - width) / 2.0)
    return image.crop((left, top, left + width, top + height))


class EvalTransform:
    """Resize and centre-crop to uint8 pixels (:meth:`pixels`), then normalise a stack of them (:meth:`batch`).

    A config this cannot reproduce exactly (an unknown interpolation or crop mode) is a :class:`ConfigError`.
    """

    def __init__(self, data_config: dict[str, Any]) -> None:
        channels, height, width = (int(n) for n in data_config["input_size"])
        interpolation = str(data_config.get("interpolation", "bilinear"))
        self.crop_mode = str(data_config.get("crop_mode") or "center")
        if interpolation not in FILTERS:
            raise ConfigError(f"interpolation {interpolation!r} is not one of {', '.join(FILTERS)}.")
        if self.crop_mode not in CROP_MODES:
            raise ConfigError(f"crop_mode {self.crop_mode!r} is not one of {', '.join(CROP_MODES)}.")
        crop_pct = float(data_config.get("crop_pct", 1.0)) or DEFAULT_CROP_PCT
        self.size = (height, width)
        self.scale = (math.floor(height / crop_pct), math.floor(width / crop_pct))
        self.filter = FILTERS[interpolation]
        self.mean = _per_channel(data_config["mean"], channels)
        self.std = _per_channel(data_config["std"], channels)
        self.fill = tuple(round(255 * float(v)) for v in data_config["mean"])

    def _resized_size(self, image: Image.Image) -> tuple[int, int]:
        if self.crop_mode == "squash":
            return self.scale[1], self.scale[0]
        if self.crop_mode == "border":
            return keep_ratio_size(image.width, image.height, self.scale, longest=1.0)
        if self.scale[0] == self.scale[1]:
            return shorter_side_size(image.width, image.height, self.scale[0])
        return keep_ratio_size(image.width, image.height, self.scale, longest=0.0)

    def resize_crop(self, image: Image.Image) -> Image.Image:
        """``image`` resized and centre-cropped to the input size, still a Pillow image."""
        size = self._resized_size(image)
        if size != image.size:
            image = image.resize(size, self.filter)
        fill = self.fill if self.crop_mode == "border" else (0,) * len(image.getbands())
        return center_crop(image, *self.size, fill=fill)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """One image, converted to RGB as the training loader does, resized and cropped: uint8 C x H x W."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        return np.asarray(self.resize_crop(image), dtype=np.uint8).transpose(2, 0, 1)

    def batch(self, pixels: np.ndarray) -> np.ndarray:
        """Stacked :meth:`pixels` (uint8 N x C x H x W) as float32 ``(x / 255 - mean) / std``."""
        scaled = pixels.astype(np.float32) / np.float32(255)
        return (scaled - self.mean) / self.std

    def __call__(self, image: Image.Image) -> np.ndarray:
        """One image as the model's float32 input, C x H x W."""
        return self.batch(self.pixels(image)[None])[0]


def _per_channel(values: Sequence[float], channels: int) -> np.ndarray:
    array = np.asarray([float(v) for v in values], dtype=np.float32)
    if array.shape != (channels,):
        raise ConfigError(f"mean/std {list(values)} does not have one value per channel ({channels}).")
    return array.reshape(channels, 1, 1)
