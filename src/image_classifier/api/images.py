"""Turning untrusted upload bytes into model input, rejecting anything that is not a sane image.

Every image's header is checked before any pixel is decoded: its bytes, its pixels, its aspect ratio
(which bounds what the resize to the model's input produces: the short side goes to the input size,
the long side follows), and, over the whole request, the pixels all its images would decode to. A
request over any of these limits costs a header read, and is answered 413 naming the limit.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from image_classifier.image_stats import image_stats

# Formats Pillow may open; anything else is rejected before a decoder runs.
FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
MEDIA_TYPES: frozenset[str] = frozenset({"application/octet-stream"})


class ImageRejected(Exception):
    """An upload that cannot be served; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ImageLimits:
    """The work one request may ask for (see :class:`~image_classifier.api.settings.ServeSettings`)."""

    max_bytes: int
    max_pixels: int
    max_aspect_ratio: float = math.inf
    max_request_pixels: int | None = None


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


@contextlib.contextmanager
def _pillow_errors(filename: str) -> Iterator[None]:
    """Pillow's exceptions for bad data as :class:`ImageRejected`: 413 for decompression bombs, else 400."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
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


def open_checked(data: bytes, filename: str, limits: ImageLimits) -> Image.Image:
    """The upload opened lazily (only its header read), once its bytes, pixels and aspect ratio are within
    ``limits``. Raises :class:`ImageRejected`: 413 over a limit, 400 for empty or unreadable data."""
    if not data:
        raise ImageRejected(400, f"{filename}: the file is empty.")
    if len(data) > limits.max_bytes:
        raise ImageRejected(413, f"{filename}: {len(data)} bytes is over the {limits.max_bytes}-byte limit.")
    with _pillow_errors(filename):
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected(
            413, f"{filename}: {width}x{height} pixels is over the {limits.max_pixels}-pixel limit (IC_MAX_PIXELS)."
        )
    aspect = max(width, height) / max(1, min(width, height))
    if aspect > limits.max_aspect_ratio:
        raise ImageRejected(
            413,
            f"{filename}: {width}x{height} has aspect ratio {aspect:.4g}, over the limit of "
            f"{limits.max_aspect_ratio:g} (IC_MAX_ASPECT_RATIO).",
        )
    return image


def load_rgb(image: Image.Image, filename: str) -> Image.Image:
    """Decode an image from :func:`open_checked` to RGB, as torchvision's ``ImageFolder`` loader does."""
    with _pillow_errors(filename):
        image.load()
        return image.convert("RGB")


def decode_image(
    data: bytes, filename: str, max_bytes: int, max_pixels: int, max_aspect_ratio: float = math.inf
) -> Image.Image:
    """The upload as an RGB image, exactly as torchvision's ``ImageFolder`` loader opens files.

    Raises :class:`ImageRejected`: 413 for too many bytes or pixels (decompression bombs) or too extreme an
    aspect ratio, 400 for empty, undecodable or truncated data.
    """
    image = open_checked(data, filename, ImageLimits(max_bytes, max_pixels, max_aspect_ratio))
    return load_rgb(image, filename)


def check_request_pixels(images: Sequence[Image.Image], limit: int | None) -> None:
    """413 when ``images`` (opened, not decoded) would decode to more than ``limit`` pixels in all."""
    total = sum(image.size[0] * image.size[1] for image in images)
    if limit is not None and total > limit:
        raise ImageRejected(
            413,
            f"{len(images)} images of {total} pixels in all is over the {limit}-pixel limit per request "
            "(IC_MAX_REQUEST_PIXELS).",
        )


def prepare(
    data: bytes,
    filename: str,
    pixels: Callable[[Image.Image], np.ndarray],
    max_bytes: int,
    max_pixels: int,
    with_stats: bool = True,
) -> tuple[np.ndarray, dict[str, float]]:
    """Decode and resize/crop (``pixels``): the uint8 input array and (``with_stats``) the image's statistics."""
    return prepare_request([(filename, data)], pixels, ImageLimits(max_bytes, max_pixels), with_stats)[0]


def prepare_request(
    uploads: Sequence[tuple[str, bytes]],
    pixels: Callable[[Image.Image], np.ndarray],
    limits: ImageLimits,
    with_stats: bool = True,
) -> list[tuple[np.ndarray, dict[str, float]]]:
    """Every upload's header checked against ``limits`` (each image's, then the request's total), and only then
    each decoded, resized and cropped by ``pixels``: its uint8 input array and (``with_stats``) its statistics,
    computed on a bounded thumbnail (:func:`~image_classifier.image_stats.image_stats`)."""
    opened = [open_checked(data, name, limits) for name, data in uploads]
    check_request_pixels(opened, limits.max_request_pixels)
    prepared = []
    for (name, _), image in zip(uploads, opened, strict=True):
        rgb = load_rgb(image, name)
        prepared.append((pixels(rgb), image_stats(rgb) if with_stats else {}))
    return prepared
