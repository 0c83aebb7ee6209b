"""Registers the project's structured-config schemas in every Hydra process.

Hydra imports the modules of the ``hydra_plugins`` namespace package when it starts, so the
``schema/<group>/default`` entries that ``configs/train.yaml`` lists exist wherever these configs are
composed: the entry points, ``hydra.compose`` in tests and notebooks, and DVC (``dvc exp run -S``).
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from image_classifier.config.schema import register_schemas

register_schemas()


class ImageClassifierSchemas(SearchPathPlugin):
    """Adds no search path: importing this module is what registers the schemas."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        return None
