"""Checkpoint bundles built at test time: a seeded baseline CNN, small enough to build in milliseconds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from image_classifier.checkpoint import Bundle
from image_classifier.untrained import untrained_bundle


def make_bundle(
    classes: Sequence[str] = ("a", "b", "c"),
    *,
    width: int = 8,
    image_size: int = 32,
    crop_pct: float | None = None,
    **fields: Any,
) -> Bundle:
    """A baseline-CNN bundle (``width`` channels, seeded weights) for ``classes`` at ``image_size`` px, at epoch 1.

    ``fields`` replace any other field of the bundle (``config``, ``lineage``, ``metrics``, ``versions``,
    ``epoch``, and even ``model_name`` or ``data_config`` where a test only reads them).
    """
    bundle = untrained_bundle(
        "baseline_cnn", classes, image_size, model_kwargs={"width": width}, crop_pct=crop_pct, epoch=1
    )
    return dataclasses.replace(bundle, **fields)
