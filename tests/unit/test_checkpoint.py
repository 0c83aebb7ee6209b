"""Checkpoint bundles: self-describing, safe to load, written atomically."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from image_classifier.checkpoint import Bundle, load_bundle, save_bundle
from image_classifier.errors import CheckpointError
from image_classifier.model import create_model, model_data_config


def _bundle() -> Bundle:
    model = create_model("baseline_cnn", num_classes=3, width=8)
    return Bundle(
        state_dict=model.state_dict(),
        model_name="baseline_cnn",
        model_kwargs={"width": 8},
        classes=["cat", "dog", "fox"],
        data_config=model_data_config(model, 32, crop_pct=1.0),
        config={"trainer": {"seed": 1}},
        lineage={"git_commit": "abc", "data_fingerprint": "f00"},
        metrics={"val/accuracy": 0.5},
        versions={"torch": torch.__version__},
        epoch=2,
    )


def test_round_trip_rebuilds_the_same_model_without_configs(tmp_path: Path) -> None:
    original = _bundle()
    path = save_bundle(tmp_path / "best.pt", original)
    assert torch.load(path, weights_only=True)["classes"] == ["cat", "dog", "fox"]
    loaded = load_bundle(path)
    assert loaded.classes == original.classes and loaded.input_size == (3, 32, 32)
    assert loaded.lineage["data_fingerprint"] == "f00" and loaded.epoch == 2
    x = torch.randn(1, 3, 32, 32)
    reference = create_model("baseline_cnn", num_classes=3, width=8)
    reference.load_state_dict(original.state_dict)
    with torch.no_grad():
        assert torch.equal(loaded.build_model()(x), reference.eval()(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"], "no temporary file left behind"


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_bundle(tmp_path / "nope.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="Cannot read"):
        load_bundle(broken)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an image-classifier bundle"):
        load_bundle(tmp_path / "plain.pt")
