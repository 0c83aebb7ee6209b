"""Contact sheets: a PNG grid of thumbnails per class, to spot a mislabelled folder by looking."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from image_classifier.data.layout import SPLITS

THUMBNAIL = 96
COLUMNS = 8
MAX_PHOTOS = 48
HEADER = 28
GAP = 4
BACKGROUND = (245, 245, 245)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def sample_per_class(photos: Sequence[tuple[str, str, str]], limit: int = MAX_PHOTOS) -> dict[str, list[str]]:
    """Up to ``limit`` paths per class from ``(split, class, path)``, seeded, train first."""
    by_class: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for split, label, path in photos:
        by_class[label].append((split, path))
    chosen = {}
    for label, entries in by_class.items():
        shuffled = sorted(entries)
        random.Random(f"contact sheet:{label}").shuffle(shuffled)
        shuffled.sort(key=lambda entry: SPLITS.index(entry[0]) if entry[0] in SPLITS else len(SPLITS))
        chosen[label] = [path for _, path in shuffled[:limit]]
    return chosen


def contact_sheet(label: str, files: Sequence[Path], total: int) -> Image.Image:
    """A grid of ``files`` as thumbnails under a header naming the class and its count."""
    rows = max(1, -(-len(files) // COLUMNS))
    cell = THUMBNAIL + GAP
    sheet = Image.new("RGB", (COLUMNS * cell + GAP, HEADER + rows * cell + GAP), BACKGROUND)
    shown = f" (showing {len(files)})" if len(files) < total else ""
    ImageDraw.Draw(sheet).text((GAP, 6), f"{label}: {total} photos{shown}", fill=(20, 20, 20), font=_font(16))
    for index, file in enumerate(files):
        with Image.open(file) as image:
            thumbnail = ImageOps.pad(image.convert("RGB"), (THUMBNAIL, THUMBNAIL), color=BACKGROUND)
        row, column = divmod(index, COLUMNS)
        sheet.paste(thumbnail, (GAP + column * cell, HEADER + GAP + row * cell))
    return sheet


def write_contact_sheets(
    dataset: Path, photos: Sequence[tuple[str, str, str]], out: Path, classes: Sequence[str]
) -> dict[str, Path]:
    """Write ``out/<class>.png`` for each class from the photos of the prepared dataset ``dataset``."""
    out.mkdir(parents=True, exist_ok=True)
    totals: dict[str, int] = defaultdict(int)
    for _, label, _ in photos:
        totals[label] += 1
    sheets = {}
    for label, paths in sample_per_class(photos).items():
        sheet = contact_sheet(label, [dataset / path for path in paths], totals[label])
        sheets[label] = out / f"{label}.png"
        sheet.save(sheets[label], format="PNG", optimize=True)
    return {label: sheets[label] for label in classes if label in sheets}
