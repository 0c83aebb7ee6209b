"""Turning untrusted upload bytes into model input, rejecting anything that is not a sane image."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from image_classifier.api.monitoring import image_stats

# Formats Pillow may open; anything else is rejected before a decoder runs.
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
MEDIA_TYPES: frozenset[str] = frozenset({"application/octet-stream"})


class ImageRejected(Exception):
    """An upload that cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def check_media_type(content_type: str | None, filename: str) -> None:
    """415 unless the part declares an image type, a generic binary type, or none."""
    if not content_type:
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media.startswith("image/") or media in MEDIA_TYPES:
        return
    raise ImageRejected(
        415, f"{filename}: unsupported media type '{media}'; send an image (image/jpeg, image/png, ...)."
    )


def decode_image(data: bytes, filename: str, max_bytes: int, max_pixels: int) -> Image.Image:
    """The upload as an RGB image, exactly as torchvision's ``ImageFolder`` loader opens files.

    Raises :class:`ImageRejected`: 413 for too many bytes or pixels (decompression bombs), 400 for empty,
    undecodable or truncated data.
    """
    if not data:
        raise ImageRejected(400, f"{filename}: the file is empty.")
    if len(data) > max_bytes:
        raise ImageRejected(413, f"{filename}: {len(data)} bytes is over the {max_bytes}-byte limit.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(413, f"{filename}: {width}x{height} pixels is over the {max_pixels}-pixel limit.")
            image.load()
            return image.convert("RGB")
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected(413, f"{filename}: rejected as a decompression bomb ({error}).") from None
    except UnidentifiedImageError:
        formats = ", ".join(FORMATS)
        raise ImageRejected(400, f"{filename}: not a readable image (not one of {formats}).") from None
    except Exception as error:  # Pillow raises many types (OSError, ValueError, SyntaxError, ...) for bad data
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ImageRejected(400, f"{filename}: not a readable image ({reason}).") from None


def prepare(
    data: bytes,
    filename: str,
    pixels: Callable[[Image.Image], np.ndarray],
    max_bytes: int,
    max_pixels: int,
    with_stats: bool = True,
) -> tuple[np.ndarray, dict[str, float]]:
    """Decode and resize/crop (``pixels``): the uint8 input array and (``with_stats``) the image's statistics."""
    image = decode_image(data, filename, max_bytes, max_pixels)
    return pixels(image), image_stats(image) if with_stats else {}
