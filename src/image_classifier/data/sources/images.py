"""Check one source image: decode it fully, convert odd modes to RGB, or say why it is skipped."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from image_classifier.data.sources.base import PrepareSettings

TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
HIGH_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "F")


@dataclass
class Checked:
    """A usable image: RGB, at most ``max_side`` pixels on its longer side."""

    image: Image.Image
    data: bytes | None
    """The original file's bytes when they can be kept as they are (an RGB JPEG needing no change)."""
    suffix: str
    """File suffix in the prepared layout: the original one for files kept as they are."""
    source_size: tuple[int, int]
    """Width and height as stored in the source, before any rotation or downscaling."""
    conversions: list[str] = field(default_factory=list)


@dataclass
class Rejected:
    reason: str


def check_image(item: Path | np.ndarray, settings: PrepareSettings) -> Checked | Rejected:
    """Decode and normalise ``item``; pixel arrays (CIFAR) are kept losslessly as PNG."""
    if isinstance(item, np.ndarray):
        image, raw, fmt = Image.fromarray(item), None, None
    else:
        raw = Path(item).read_bytes()
        opened = _decode(raw, settings)
        if isinstance(opened, Rejected):
            return opened
        image, fmt = opened, opened.format
    width, height = image.size
    if min(width, height) < settings.min_side:
        return Rejected(f"too small: {width}x{height} pixels")

    conversions: list[str] = []
    if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        image = ImageOps.exif_transpose(image)
        conversions.append("rotated by EXIF orientation")
    rgb, mode_change = _to_rgb(image)
    if mode_change:
        conversions.append(mode_change)
    if max(rgb.size) > settings.max_side:
        rgb.thumbnail((settings.max_side, settings.max_side), Image.Resampling.LANCZOS)
        conversions.append(f"downscaled to {settings.max_side} px")

    if raw is None:
        buffer = io.BytesIO()
        rgb.save(buffer, format="PNG")
        return Checked(rgb, buffer.getvalue(), ".png", (width, height), conversions)
    if fmt == "JPEG" and not conversions:
        return Checked(rgb, raw, cast(Path, item).suffix or ".jpg", (width, height))
    if fmt != "JPEG" and not conversions:
        conversions.append(f"{fmt} re-encoded as JPEG")
    return Checked(rgb, None, ".jpg", (width, height), conversions)


def _decode(raw: bytes, settings: PrepareSettings) -> Image.Image | Rejected:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if width * height > settings.max_pixels:
                return Rejected(f"too large: {width}x{height} pixels (limit {settings.max_pixels})")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return Rejected(f"too large: decompression bomb ({error})")
    except UnidentifiedImageError:
        return Rejected("not an image")
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        return Rejected(f"truncated or corrupt: {error}")
    return image


def _to_rgb(image: Image.Image) -> tuple[Image.Image, str | None]:
    """The image in RGB, and a note of what was converted (None when it already was RGB)."""
    mode = image.mode
    if mode == "RGB":
        return image, None
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in TRANSPARENT_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB"), f"{mode} flattened onto white"
    if mode in HIGH_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = ((values - low) / (high - low or 1.0) * 255).round().astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB"), f"{mode} scaled to 8-bit RGB"
    return image.convert("RGB"), f"{mode} converted to RGB"
