"""The embedded dataset: ten classes of shapes on varied backgrounds, generated from a seed.

Nothing gives a class away but its outline: colour, position, size, rotation, background
and image size are drawn independently of the class. Images are written as JPEGs in the
same ``split/class/`` layout that the real datasets are prepared into.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from image_classifier.data.layout import (
    PreparedDataset,
    Sample,
    is_prepared,
    load_prepared_dataset,
    prepared_dir,
    write_prepared_dataset,
)
from image_classifier.errors import ConfigError

Point = tuple[float, float]

log = logging.getLogger(__name__)

SHAPE_CLASSES: tuple[str, ...] = (
    "circle",
    "crescent",
    "cross",
    "heart",
    "hexagon",
    "pentagon",
    "ring",
    "square",
    "star",
    "triangle",
)


@dataclass(frozen=True)
class ShapesSpec:
    """Everything that determines the generated images."""

    seed: int = 0
    train_per_class: int = 300
    val_per_class: int = 30
    test_per_class: int = 30
    min_side: int = 56
    max_side: int = 112

    def counts(self) -> dict[str, int]:
        return {"train": self.train_per_class, "val": self.val_per_class, "test": self.test_per_class}


def _regular_polygon(sides: int, radius: float, rotation: float) -> list[Point]:
    return [
        (radius * math.cos(rotation + 2 * math.pi * k / sides), radius * math.sin(rotation + 2 * math.pi * k / sides))
        for k in range(sides)
    ]


def _star(radius: float, rotation: float) -> list[Point]:
    points = []
    for k in range(10):
        r = radius if k % 2 == 0 else radius * 0.42
        angle = rotation + math.pi * k / 5
        points.append((r * math.cos(angle), r * math.sin(angle)))
    return points


def _cross(radius: float, rotation: float) -> list[Point]:
    a, b = radius, radius * 0.33
    outline = [
        (b, a),
        (b, b),
        (a, b),
        (a, -b),
        (b, -b),
        (b, -a),
        (-b, -a),
        (-b, -b),
        (-a, -b),
        (-a, b),
        (-b, b),
        (-b, a),
    ]
    return _rotate(outline, rotation)


def _heart(radius: float, rotation: float) -> list[Point]:
    points = []
    for k in range(48):
        t = 2 * math.pi * k / 48
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        points.append((x * radius / 17, y * radius / 17))
    return _rotate(points, rotation)


def _rotate(points: list[Point], angle: float) -> list[Point]:
    c, s = math.cos(angle), math.sin(angle)
    return [(x * c - y * s, x * s + y * c) for x, y in points]


def _random_colour(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randrange(256), rng.randrange(256), rng.randrange(256))


def _luminance(colour: tuple[int, int, int]) -> float:
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def _background(rng: random.Random, size: tuple[int, int]) -> tuple[Image.Image, float]:
    """A solid, gradient, striped or noisy background, and its mean luminance."""
    width, height = size
    a, b = _random_colour(rng), _random_colour(rng)
    kind = rng.choice(("solid", "gradient", "stripes", "noise"))
    if kind == "solid":
        return Image.new("RGB", size, a), _luminance(a)
    if kind == "gradient":
        gradient = Image.linear_gradient("L").resize(size).rotate(rng.uniform(0, 360), expand=False, fillcolor=128)
        return Image.composite(Image.new("RGB", size, a), Image.new("RGB", size, b), gradient), (
            _luminance(a) + _luminance(b)
        ) / 2
    if kind == "stripes":
        image = Image.new("RGB", size, a)
        draw = ImageDraw.Draw(image)
        period = rng.randint(4, 12)
        for offset in range(-height, width + height, period * 2):
            draw.polygon(
                [(offset, 0), (offset + period, 0), (offset + period + height, height), (offset + height, height)], b
            )
        return image, (_luminance(a) + _luminance(b)) / 2
    pixels = np.random.default_rng(rng.randrange(2**32)).normal(128, rng.uniform(30, 80), (height, width))
    noise = Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))
    return Image.merge("RGB", [noise.point(lambda v, c=c: int(v * c / 255)) for c in a]), _luminance(a) / 2


def _outline(name: str, radius: float, rotation: float) -> list[Point]:
    builders: dict[str, Callable[[], list[Point]]] = {
        "triangle": lambda: _regular_polygon(3, radius, rotation),
        "square": lambda: _regular_polygon(4, radius, rotation),
        "pentagon": lambda: _regular_polygon(5, radius, rotation),
        "hexagon": lambda: _regular_polygon(6, radius, rotation),
        "star": lambda: _star(radius, rotation),
        "cross": lambda: _cross(radius, rotation),
        "heart": lambda: _heart(radius, rotation),
    }
    return builders[name]()


def draw_shape(name: str, rng: random.Random, size: tuple[int, int]) -> Image.Image:
    """Draw one ``name`` shape at a random place, scale, rotation and colour."""
    scale = 4  # draw large, then downsample: anti-aliased edges like a photo
    background, bg_luma = _background(rng, size)
    width, height = size[0] * scale, size[1] * scale
    radius = rng.uniform(0.28, 0.45) * min(width, height)
    cx = rng.uniform(radius, width - radius)
    cy = rng.uniform(radius, height - radius)
    rotation = rng.uniform(0, 2 * math.pi)
    colour = _random_colour(rng)
    while abs(_luminance(colour) - bg_luma) < 60:
        colour = _random_colour(rng)

    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    box = [cx - radius, cy - radius, cx + radius, cy + radius]
    if name == "circle":
        draw.ellipse(box, fill=255)
    elif name == "ring":
        draw.ellipse(box, fill=255)
        inner = radius * rng.uniform(0.45, 0.65)
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif name == "crescent":
        draw.ellipse(box, fill=255)
        shift = radius * rng.uniform(0.35, 0.6)
        dx, dy = shift * math.cos(rotation), shift * math.sin(rotation)
        draw.ellipse([box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy], fill=0)
    else:
        draw.polygon([(cx + x, cy + y) for x, y in _outline(name, radius, rotation)], fill=255)

    mask = mask.resize(size, Image.Resampling.LANCZOS)
    shaded = Image.new("RGB", size, colour)
    image = Image.composite(shaded, background, mask)
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 0.8)))
    return image


def _samples(spec: ShapesSpec) -> Iterator[Sample]:
    rng = random.Random(spec.seed)
    for split, per_class in spec.counts().items():
        for label in SHAPE_CLASSES:
            for _ in range(per_class):
                width = rng.randint(spec.min_side, spec.max_side)
                height = int(min(spec.max_side, max(spec.min_side, width * rng.uniform(0.75, 1.33))))
                image = draw_shape(label, rng, (width, height))
                yield Sample(split=split, label=label, image=image, quality=rng.randint(70, 95))


def generate_shapes(root: Path, spec: ShapesSpec = ShapesSpec()) -> PreparedDataset:
    """Generate the dataset into ``root`` (a ``processed/shapes`` directory), atomically."""
    return write_prepared_dataset(
        root,
        classes=list(SHAPE_CLASSES),
        samples=_samples(spec),
        source=shapes_source(spec),
    )


def shapes_source(spec: ShapesSpec) -> dict[str, object]:
    """What ``summary.json`` records as the source: a different spec means regenerate."""
    return {"generator": "image_classifier.data.shapes", **asdict(spec)}


def shapes_spec(settings: Mapping[str, Any]) -> ShapesSpec:
    """The spec for ``data.generate`` settings; an unknown or bad setting is a one-line error."""
    try:
        return ShapesSpec(**settings)
    except TypeError as error:
        raise ConfigError(f"Bad shapes generate settings: {error}") from error


@dataclass(frozen=True)
class ShapesSource:
    """The embedded dataset as a :class:`~image_classifier.data.sources.base.Source`: generated from its settings."""

    name: str = "shapes"
    settings_key: ClassVar[str] = "generate"
    generated: ClassVar[bool] = True

    def is_current(self, directory: Path, settings: Mapping[str, Any]) -> bool:
        """Generated in ``directory`` from these very settings."""
        spec = shapes_spec(settings)
        return is_prepared(directory) and load_prepared_dataset(directory).summary["source"] == shapes_source(spec)

    def prepare(self, root: Path, origin: Path | None, settings: Mapping[str, Any]) -> PreparedDataset:
        """Generate it under the data root ``root``; ``origin`` does not apply (see :attr:`generated`)."""
        target = prepared_dir(root, self.name)
        log.info("Generating the embedded shapes dataset into %s", target)
        return generate_shapes(target, shapes_spec(settings))


SOURCE = ShapesSource()
