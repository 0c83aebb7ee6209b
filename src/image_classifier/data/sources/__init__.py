"""The real datasets: download or import each one, then prepare it into the canonical layout."""

from __future__ import annotations

from image_classifier.data.sources import animals_v2, cats_vs_dogs, cifar10
from image_classifier.data.sources.base import DatasetSource, PrepareSettings
from image_classifier.data.sources.prepare import prepare_source

SOURCES: dict[str, DatasetSource] = {
    source.name: source for source in (animals_v2.SOURCE, cifar10.SOURCE, cats_vs_dogs.SOURCE)
}
# every dataset name the project knows: the embedded one, then the real sources
KNOWN_DATASETS: tuple[str, ...] = ("shapes", *SOURCES)

__all__ = ["KNOWN_DATASETS", "SOURCES", "DatasetSource", "PrepareSettings", "prepare_source"]
