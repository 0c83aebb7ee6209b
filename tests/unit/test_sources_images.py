"""Checking source images: odd modes are converted to RGB, broken or unusable files are rejected with a reason."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_classifier.data.sources.base import PrepareSettings
from image_classifier.data.sources.images import Checked, Rejected, check_image

SETTINGS = PrepareSettings(max_side=64, min_side=8)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels: opening it must not allocate them."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def save(path: Path, image: Image.Image, fmt: str, **params: object) -> Path:
    image.save(path, format=fmt, **params)
    return path


def test_rgb_jpeg_is_kept_byte_for_byte(tmp_path: Path) -> None:
    path = save(tmp_path / "a.jpeg", Image.new("RGB", (40, 30), (10, 200, 30)), "JPEG")
    result = check_image(path, SETTINGS)
    assert isinstance(result, Checked)
    assert result.data == path.read_bytes() and result.conversions == [] and result.suffix == ".jpeg"


@pytest.mark.parametrize(
    ("mode", "fmt", "note"),
    [
        ("CMYK", "JPEG", "CMYK converted to RGB"),
        ("L", "PNG", "L converted to RGB"),
        ("P", "PNG", "P converted to RGB"),
        ("RGBA", "PNG", "RGBA flattened onto white"),
        ("I;16", "PNG", "I;16 scaled to 8-bit RGB"),
    ],
)
def test_odd_modes_become_rgb(tmp_path: Path, mode: str, fmt: str, note: str) -> None:
    image = (
        Image.new("RGB", (40, 30), (200, 40, 40)).convert(mode) if mode != "I;16" else Image.new("I;16", (40, 30), 900)
    )
    result = check_image(save(tmp_path / f"x.{fmt.lower()}", image, fmt), SETTINGS)
    assert isinstance(result, Checked)
    assert result.image.mode == "RGB" and result.image.size == (40, 30)
    assert note in result.conversions and result.data is None and result.suffix == ".jpg"


def test_transparent_palette_is_flattened_onto_white(tmp_path: Path) -> None:
    image = Image.new("P", (20, 20), 0)
    image.putpalette([255, 0, 0] * 256)
    result = check_image(save(tmp_path / "t.png", image, "PNG", transparency=0), SETTINGS)
    assert isinstance(result, Checked)
    assert result.image.getpixel((5, 5)) == (255, 255, 255)


def test_large_images_are_downscaled(tmp_path: Path) -> None:
    result = check_image(save(tmp_path / "big.jpg", Image.new("RGB", (300, 150)), "JPEG"), SETTINGS)
    assert isinstance(result, Checked)
    assert result.image.size == (64, 32) and "downscaled to 64 px" in result.conversions


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"just some text, not an image", "not an image"),
        (b"", "not an image"),
        (png_header_only(30_000, 30_000), "too large"),
        (png_header_only(7_000, 7_000), "too large"),
    ],
)
def test_unusable_files_are_rejected(tmp_path: Path, payload: bytes, reason: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(payload)
    result = check_image(path, PrepareSettings(max_pixels=40_000_000))
    assert isinstance(result, Rejected) and result.reason.startswith(reason)


def test_truncated_jpeg_is_rejected(tmp_path: Path) -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    result = check_image(path, SETTINGS)
    assert isinstance(result, Rejected) and result.reason.startswith("truncated or corrupt")


@pytest.mark.parametrize("size", [(1, 1), (1, 200), (5, 5)])
def test_tiny_images_are_rejected(tmp_path: Path, size: tuple[int, int]) -> None:
    result = check_image(save(tmp_path / "tiny.png", Image.new("RGB", size), "PNG"), SETTINGS)
    assert isinstance(result, Rejected) and result.reason.startswith("too small")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    path = save(tmp_path / "r.jpg", Image.new("RGB", (40, 20)), "JPEG", exif=exif.tobytes())
    result = check_image(path, SETTINGS)
    assert isinstance(result, Checked)
    assert result.image.size == (20, 40) and "rotated by EXIF orientation" in result.conversions


def test_pixel_arrays_are_kept_losslessly() -> None:
    pixels = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    result = check_image(pixels, SETTINGS)
    assert isinstance(result, Checked) and result.suffix == ".png" and result.data is not None
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(result.data))), pixels)
