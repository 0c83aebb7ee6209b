"""What every dataset source provides: its settings, its candidate images, and the :class:`Source` protocol."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np

from image_classifier.data.layout import PreparedDataset
from image_classifier.errors import ConfigError


@dataclass(frozen=True)
class PrepareSettings:
    """How a source is turned into the prepared layout (the ``prepare:`` section of a data config)."""

    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_side: int = 512
    min_side: int = 8
    max_pixels: int = 40_000_000
    url: str | None = None
    md5: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> Self:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Unknown prepare setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        settings = cls(**values)
        if not (0 <= settings.val_fraction < 1 and 0 <= settings.test_fraction < 1):
            raise ConfigError("prepare.val_fraction and prepare.test_fraction must be in [0, 1).")
        if settings.val_fraction + settings.test_fraction >= 1:
            raise ConfigError("prepare.val_fraction + prepare.test_fraction must leave some training data.")
        if settings.min_side < 1 or settings.max_side < settings.min_side:
            raise ConfigError("prepare.min_side must be >= 1 and prepare.max_side >= prepare.min_side.")
        return settings


@dataclass(frozen=True)
class Candidate:
    """One image found in the source, with its split and label, before it is checked."""

    split: str
    label: str
    origin: str
    """Where it came from, relative to the source (reported for skipped files)."""
    image: Path | np.ndarray
    """A file, or the pixels (H x W x 3 uint8) for sources that store arrays."""
    name: str
    """File name in the prepared layout (the suffix may change when the image is converted)."""


@dataclass(frozen=True)
class Collected:
    """The classes (sorted) and the candidate images of a source."""

    classes: list[str]
    candidates: list[Candidate]
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Files that are not usable before even opening them (e.g. no label in the file name)."""


class Source(Protocol):
    """A dataset the project knows: how it is obtained, and prepared into ``ROOT/processed/NAME``."""

    @property
    def name(self) -> str: ...

    @property
    def settings_key(self) -> str:
        """The section of a data config that says how it is prepared (``prepare``, ``generate``)."""
        ...

    @property
    def generated(self) -> bool:
        """Made from its settings alone: on first use, and again whenever they change; no ``--source``."""
        ...

    def is_current(self, directory: Path, settings: Mapping[str, Any]) -> bool:
        """Whether ``directory`` holds it, prepared as ``settings`` say."""
        ...

    def prepare(self, root: Path, origin: Path | None, settings: Mapping[str, Any]) -> PreparedDataset:
        """Obtain it (from ``origin``, what the user has, when given) and prepare it under the data root ``root``."""
        ...
