"""The data configs of the project: where ``configs/data/NAME.yaml`` is, and the preparing section of one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from image_classifier.data.sources import Source
from image_classifier.errors import ConfigError
from image_classifier.project import project_root


def default_config(name: str) -> Path:
    """``configs/data/NAME.yaml`` of the project (``$PROJECT_ROOT``, the source checkout, or the cwd)."""
    return project_root() / "configs" / "data" / f"{name}.yaml"


def data_settings(source: Source, config: Path | None) -> dict[str, Any]:
    """The section of a data config (or a composed ``params.yaml``) that says how ``source`` is prepared."""
    path = config or default_config(source.name)
    if not path.is_file():
        if config is not None:
            raise ConfigError(f"--config {path} does not exist.")
        return {}
    try:
        loaded = OmegaConf.load(path)
        section = loaded.get("data", loaded) if isinstance(loaded, DictConfig) else None
        if not isinstance(section, DictConfig):
            raise ConfigError(f"{path} is not a data config.")
        if section.get("name", source.name) != source.name:
            raise ConfigError(f"{path} configures dataset '{section.name}', not '{source.name}'.")
        values = section.get(source.settings_key)
        return OmegaConf.to_container(values, resolve=True) if isinstance(values, DictConfig) else {}  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(f"Cannot read {path}: {error}") from error
