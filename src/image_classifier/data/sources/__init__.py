"""Every dataset the project knows, and how each is obtained and prepared into the canonical layout."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from image_classifier.data import shapes
from image_classifier.data.layout import prepared_dir
from image_classifier.data.sources import animals_v2, cats_vs_dogs, cifar10
from image_classifier.data.sources.base import Source
from image_classifier.data.sources.user import ImportedSource, is_import_config
from image_classifier.errors import ConfigError, UserError

# the embedded generated dataset first (the default), then the real ones
SOURCES: dict[str, Source] = {
    source.name: source for source in (shapes.SOURCE, animals_v2.SOURCE, cifar10.SOURCE, cats_vs_dogs.SOURCE)
}
KNOWN_DATASETS: tuple[str, ...] = tuple(SOURCES)


def source_named(name: str, prepare: Mapping[str, Any] | None = None) -> Source:
    """The dataset ``name``: a built-in one, or the user's photos when its config's ``prepare`` records an import.

    An unknown name is a one-line error listing the known ones and saying how to import photos.
    """
    if name in SOURCES:
        return SOURCES[name]
    if is_import_config(prepare):
        return ImportedSource(name)
    raise ConfigError(
        f"Unknown dataset '{name}'. Known: {', '.join(KNOWN_DATASETS)}; "
        f"or import your own photos as it: invoke data {name} --source PATH."
    )


def is_known_dataset(name: str, prepare: Mapping[str, Any] | None) -> bool:
    """A built-in dataset, or one imported from the user's photos (its data config records the source)."""
    return name in SOURCES or is_import_config(prepare)


def prepare_if_needed(
    source: Source, root: Path | str, settings: Mapping[str, Any], origin: Path | None = None, force: bool = False
) -> bool:
    """Prepare ``source`` into ``ROOT/processed/NAME`` unless it is current there already; True if it was prepared."""
    if origin is not None and source.generated:
        raise UserError(f"{source.name} is generated from its settings; --source does not apply to it.")
    if not force and source.is_current(prepared_dir(root, source.name), settings):
        return False
    source.prepare(Path(root), origin, settings)
    return True


__all__ = [
    "KNOWN_DATASETS",
    "SOURCES",
    "ImportedSource",
    "Source",
    "is_known_dataset",
    "prepare_if_needed",
    "source_named",
]
