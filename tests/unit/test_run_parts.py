"""One builder for a run's parts: training crops at data.image_size, everything else reads at the eval size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from image_classifier.bench.measure import measure
from image_classifier.checkpoint import Bundle
from image_classifier.errors import CheckpointError
from image_classifier.run_parts import build_run_parts, bundle_run_parts
from tests.conftest import TINY_DATA_OVERRIDES, TINY_OVERRIDES, ComposeFn

SIZES = ["data.image_size=32", "data.eval_image_size=40", "model.kwargs.width=8"]


def test_training_crops_at_the_image_size_and_every_split_is_read_at_the_eval_size(
    compose_config: ComposeFn, tiny_data_root: Path
) -> None:
    cfg = compose_config("train", [*TINY_OVERRIDES, f"data.root={tiny_data_root}", *SIZES])
    parts = build_run_parts(cfg)
    assert parts.data_configs.train["input_size"] == (3, 32, 32)
    assert parts.data_configs.eval["input_size"] == (3, 40, 40)
    assert {k: v for k, v in parts.data_configs.train.items() if k != "input_size"} == {
        k: v for k, v in parts.data_configs.eval.items() if k != "input_size"
    }
    data = parts.loaders()
    assert set(data.loaders) == {"train", "val", "test"} and data.classes == parts.classes
    assert next(iter(data.loaders["train"]))[0].shape[-2:] == (32, 32)
    assert next(iter(data.loaders["val"]))[0].shape[-2:] == (40, 40)
    assert next(iter(parts.loader("test")))[0].shape[-2:] == (40, 40)


def test_a_bundle_is_evaluated_with_its_own_model_and_data_config(
    compose_config: ComposeFn, tiny_data_root: Path
) -> None:
    train_cfg = compose_config("train", [*TINY_OVERRIDES, f"data.root={tiny_data_root}", *SIZES])
    trained = build_run_parts(train_cfg)
    bundle = Bundle(
        state_dict=trained.model.state_dict(), model_name="baseline_cnn", model_kwargs=trained.model_kwargs,
        classes=trained.classes, data_config=trained.data_configs.eval, config={}, lineage={}, metrics={},
        versions={}, epoch=0,
    )  # fmt: skip
    evaluate = ["checkpoint=unused.pt", f"data.root={tiny_data_root}", *TINY_DATA_OVERRIDES, "data.image_size=32"]
    cfg = compose_config("evaluate", evaluate)
    parts = bundle_run_parts(cfg, bundle)
    assert parts.data_configs.eval == bundle.data_config
    assert next(iter(parts.loader("val")))[0].shape[-2:] == (40, 40)
    other = dataclasses.replace(bundle, classes=list(reversed(bundle.classes)))
    with pytest.raises(CheckpointError, match="do not match shapes's classes"):
        bundle_run_parts(cfg, other)


def test_the_benchmark_measures_evaluation_at_the_size_training_evaluates_at(
    compose_config: ComposeFn, tiny_data_root: Path
) -> None:
    cfg = compose_config("train", [*TINY_OVERRIDES, f"data.root={tiny_data_root}", *SIZES])
    assert measure(cfg, "train", batches=1, rounds=1)["img_size"] == 32
    assert measure(cfg, "eval", batches=1, rounds=1)["img_size"] == 40
