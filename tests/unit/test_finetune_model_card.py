"""The model card beside a best bundle: data and fingerprint, metrics, lineage, intended use and limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from image_classifier.checkpoint import save_bundle
from image_classifier.training.model_card import write_model_card
from tests.helpers.bundles import make_bundle


def test_model_card_describes_data_metrics_lineage_and_limits(tmp_path: Path) -> None:
    config = {
        "data": {"name": "cats_vs_dogs", "image_size": 64},
        "model": {"name": "convnextv2_atto", "pretrained": True, "weights": None},
        "trainer": {"max_epochs": 3, "monitor": "val/accuracy", "ema": {"enabled": True, "decay": 0.999}},
        "optimizer": {"opt": "adamw", "lr": 5e-4, "weight_decay": 0.05, "layer_decay": 0.8},
        "scheduler": {"sched": "cosine", "warmup_epochs": 1},
    }
    bundle = make_bundle(
        ["cat", "dog"],
        width=4,
        data_config={"input_size": (3, 64, 64), "mean": (0.5,) * 3, "std": (0.25,) * 3},
        config=config,
        lineage={"git_commit": "abc123", "data_fingerprint": "f" * 32, "run_dir": str(tmp_path), "wandb_run_id": "r1"},
        metrics={"val/accuracy": 0.91, "val_ema/accuracy": 0.93, "test/accuracy": 0.925, "test/f1_macro": 0.9249},
        epoch=2,
    )
    path = save_bundle(tmp_path / "checkpoints" / "best.pt", bundle)
    summary = {"counts": {"train": {"cat": 80, "dog": 80}, "test": {"cat": 10, "dog": 10}}, "source": "kaggle"}

    card = write_model_card(path, summary).read_text()
    assert path.with_name("model_card.md").is_file()
    assert "cats_vs_dogs" in card and "f" * 32 in card and "train 160, test 20" in card
    assert "| accuracy | 0.9100 | 0.9300 | 0.9250 |" in card and "0.9249" in card
    assert "abc123" in card and "config.yaml" in card and "r1" in card and "torch" in card
    assert "pretrained" in card and "layer-wise lr decay | 0.8" in card
    assert "## Intended use" in card and "## Limits" in card and "cats from dogs" in card
    _a_failed_rewrite_keeps_the_card(path, card, monkeypatch_target=tmp_path)


def _a_failed_rewrite_keeps_the_card(path: Path, card: str, monkeypatch_target: Path) -> None:
    """A rewrite that fails midway (the disk fills up after half the text) leaves the earlier card whole."""
    original = Path.write_text

    def half_then_fail(self: Path, text: str, *args: object, **kwargs: object) -> int:
        original(self, text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Path, "write_text", half_then_fail)
        with pytest.raises(OSError, match="No space left"):
            write_model_card(path, {"counts": {}, "source": "elsewhere"})
    assert path.with_name("model_card.md").read_text() == card
    assert [p.name for p in monkeypatch_target.rglob("*.partial")] == []
