"""Input statistics of an image (size, brightness, contrast, colour): what the served model's prediction log
records per input, and what :mod:`image_classifier.drift` compares with the training data."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# The long side, in pixels, of the thumbnail that input statistics are measured on.
STATS_SIDE = 256


def stats_thumbnail(image: Image.Image, side: int = STATS_SIDE) -> Image.Image:
    """``image`` box-averaged by a whole factor until its long side is at most ``side`` (itself when it already is):
    what :func:`image_stats` measures, so that its cost and memory do not grow with the image."""
    factor = math.ceil(max(image.size) / side)
    return image.reduce(factor) if factor > 1 else image


def image_stats(image: Image.Image) -> dict[str, float]:
    """Size, brightness, contrast, channel means and saturation of an RGB image (values in 0..1).

    The size is the image's; the rest is measured on its :func:`stats_thumbnail`."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    pixels = np.asarray(stats_thumbnail(rgb), dtype=np.float32) / 255.0
    gray = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    width, height = image.size
    return {
        "width": float(width),
        "height": float(height),
        "aspect": width / height,
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "red": float(pixels[..., 0].mean()),
        "green": float(pixels[..., 1].mean()),
        "blue": float(pixels[..., 2].mean()),
        "saturation": float((pixels.max(axis=2) - pixels.min(axis=2)).mean()),
    }
