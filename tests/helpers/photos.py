"""Photos drawn at test time (no image files are committed): distinct, smooth, photo-like pictures."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter


def drawn_photo(seed: int, size: tuple[int, int] = (48, 48)) -> Image.Image:
    """A picture of a few coloured shapes on a gradient: each seed draws a different one."""
    rng = random.Random(seed)
    width, height = size
    top, bottom = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(2)]
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        mix = y / max(1, height - 1)
        draw.line([(0, y), (width, y)], fill=tuple(round(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True)))
    for _ in range(4):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(width // 4, width), y0 + rng.randrange(height // 4, height)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x1, y1], fill=tuple(rng.randrange(256) for _ in range(3)))
    return image.filter(ImageFilter.GaussianBlur(1))


def save_photo(path: Path, seed: int, size: tuple[int, int] = (48, 48), fmt: str | None = None) -> Path:
    """Draw photo ``seed`` into ``path`` (the format from its suffix unless ``fmt``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    drawn_photo(seed, size).save(path, format=fmt)
    return path


def photo_folders(
    root: Path, per_class: dict[str, int], seed: int = 0, suffix: str = ".jpg", size: tuple[int, int] = (48, 48)
) -> Path:
    """``root/<class>/<class>_<i><suffix>`` for each class: a folder of class folders."""
    for c, (label, count) in enumerate(sorted(per_class.items())):
        for i in range(count):
            save_photo(root / label / f"{label}_{i}{suffix}", seed * 100_000 + c * 1000 + i, size)
    return root


def resized_jpeg(source: Path, scale: float = 0.8, quality: int = 85) -> bytes:
    """``source`` resized to ``scale`` of its size and re-encoded as a JPEG at ``quality``."""
    with Image.open(source) as image:
        small = image.convert("RGB").resize((round(image.width * scale), round(image.height * scale)))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
