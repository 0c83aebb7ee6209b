"""Bundles of seeded, untrained weights: for benchmarks and tests, which serve a model without training one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from image_classifier.checkpoint import Bundle, library_versions
from image_classifier.model import create_model, model_data_config


def untrained_bundle(
    model_name: str,
    classes: Sequence[str],
    image_size: int,
    *,
    model_kwargs: dict[str, Any] | None = None,
    crop_pct: float | None = None,
    seed: int = 0,
    **fields: Any,
) -> Bundle:
    """A bundle of ``model_name`` for ``classes`` at ``image_size`` px, its weights initialised after
    ``torch.manual_seed(seed)``.

    ``fields`` set the bundle's other fields (``config``, ``lineage``, ``metrics``, ``versions``, ``epoch``);
    unset, they are empty, today's library versions and epoch 0.
    """
    kwargs = dict(model_kwargs or {})
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=len(classes), **kwargs).eval()
    defaults: dict[str, Any] = {"config": {}, "lineage": {}, "metrics": {}, "versions": library_versions(), "epoch": 0}
    return Bundle(
        state_dict=model.state_dict(),
        model_name=model_name,
        model_kwargs=kwargs,
        classes=list(classes),
        data_config=model_data_config(model, image_size, crop_pct),
        **(defaults | fields),
    )
