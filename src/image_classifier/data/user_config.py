"""``configs/data/NAME.yaml`` for an imported dataset: inherits ``default``, records the source and settings."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from image_classifier.atomic import write_text_atomic
from image_classifier.data.sources.user import ImportSettings, is_import_config

IMAGE_SIZES: tuple[int, ...] = (32, 48, 64, 96, 128, 160, 192, 224)
"""Training sizes to pick from: the largest not above the photos' median shorter side (no upsampling)."""
BATCH_SIZE = 32
UNSET = ("url", "md5")


def pick_image_size(median_shorter_side: float) -> int:
    """The training image size for photos whose shorter side is typically ``median_shorter_side`` pixels."""
    return max((size for size in IMAGE_SIZES if size <= median_shorter_side), default=IMAGE_SIZES[0])


def read_data_config(path: Path) -> DictConfig | None:
    """The data config at ``path``, or None if there is none or it cannot be read."""
    if not path.is_file():
        return None
    try:
        loaded = OmegaConf.load(path)
    except (OmegaConfBaseException, OSError, ValueError):
        return None
    return loaded if isinstance(loaded, DictConfig) else None


def imported_from(path: Path) -> str | None:
    """The source recorded in an imported dataset's config at ``path``; None if it is not one."""
    config = read_data_config(path)
    prepare = config.get("prepare") if config is not None else None
    if isinstance(prepare, DictConfig) and is_import_config(OmegaConf.to_container(prepare)):  # type: ignore[arg-type]
        return str(prepare.source)
    return None


def _yaml(value: Any) -> str:
    """A YAML scalar: JSON's quoting is valid YAML; OmegaConf's ``${`` is escaped."""
    text = json.dumps(value)
    return text.replace("${", "\\\\${") if isinstance(value, str) else text


def config_text(name: str, settings: ImportSettings, summary: dict[str, Any], median_shorter_side: float) -> str:
    """The YAML of ``configs/data/NAME.yaml`` for a dataset imported with ``settings``."""
    size = pick_image_size(median_shorter_side)
    classes = summary["classes"]
    counts = ", ".join(f"{split} {sum(per.values())}" for split, per in summary["counts"].items())
    listed = ", ".join(classes[:12]) + (f" and {len(classes) - 12} more" if len(classes) > 12 else "")
    prepare = {key: value for key, value in asdict(settings).items() if key not in UNSET}
    lines = [
        f"# Your photos: {len(classes)} classes ({listed}); {counts}.",
        f"# Imported from {settings.source} ({summary.get('layout', 'photos')}) by",
        f"#   invoke data {name} --source PATH    (again after the photos change: add --force)",
        f"# image_size {size}: the largest of {', '.join(map(str, IMAGE_SIZES))} not above the photos' median "
        f"shorter side ({median_shorter_side:g} px).",
        "defaults:",
        "  - default",
        "  - _self_",
        "",
        f"name: {name}",
        f"image_size: {size}",
        f"batch_size: {BATCH_SIZE}",
        "prepare:                # how the photos were imported (invoke data NAME --force imports them again)",
        *(f"  {key}: {_yaml(value)}" for key, value in prepare.items()),
        "",
    ]
    return "\n".join(lines)


def write_data_config(
    path: Path, name: str, settings: ImportSettings, summary: dict[str, Any], median_shorter_side: float
) -> Path:
    """Write the imported dataset's config to ``path`` atomically."""
    return write_text_atomic(path, config_text(name, settings, summary, median_shorter_side))
