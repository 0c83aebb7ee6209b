"""The evaluation preprocessing, rebuilt from a bundle's data config alone."""

from __future__ import annotations

from typing import Any

from timm.data import create_transform


def eval_transform(data_config: dict[str, Any]) -> Any:
    """Resize, centre-crop (``crop_pct``), to tensor and normalise, exactly as evaluation does."""
    return create_transform(
        input_size=tuple(data_config["input_size"]),
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        crop_pct=data_config.get("crop_pct", 1.0),
        crop_mode=data_config.get("crop_mode", "center"),
        is_training=False,
    )
