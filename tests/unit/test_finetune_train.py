"""The fine-tuning pieces switched on together in a real (tiny) training run, and early stopping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from image_classifier.checkpoint import load_bundle
from image_classifier.evaluate import evaluate
from image_classifier.train import train
from tests.conftest import TINY_DATA_OVERRIDES, TINY_OVERRIDES, ComposeFn

ALL_PIECES = [
    "trainer.max_epochs=2",
    "trainer.head_warmup_epochs=1",
    "trainer.mixup.mixup_alpha=0.2",
    "trainer.mixup.cutmix_alpha=1.0",
    "trainer.label_smoothing=0.1",
    "trainer.ema.enabled=true",
    "trainer.ema.decay=0.9",
    "trainer.accumulate_grad_batches=2",
    "trainer.clip_grad_norm=1.0",
    "optimizer.layer_decay=0.7",
    "model.kwargs.width=8",
]


def test_every_fine_tuning_piece_trains_and_the_ema_weights_are_kept(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    metrics = train(compose_config("train", [*TINY_OVERRIDES, f"data.root={tiny_data_root}", *ALL_PIECES]))
    assert {"val/accuracy", "val_ema/accuracy", "best/val_ema/accuracy", "test/accuracy"} <= metrics.keys()

    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    state = last["training_state"]
    assert state["step"] == 2 * 3  # 5 batches an epoch, an update every 2 (and after the last)
    ema_weights = {k.removeprefix("module."): v for k, v in state["ema"].items()}
    assert any(not torch.equal(last["state_dict"][k], ema_weights[k]) for k in ema_weights)

    # best.pt holds the EMA weights of its epoch, whichever epoch won: evaluated on the val split, they
    # score that epoch's val_ema/* exactly, and not the raw weights' val/*
    best = load_bundle(run_dir / "checkpoints" / "best.pt")
    scores = json.loads((run_dir / "history.json").read_text())[best.epoch]
    assert scores["epoch"] == best.epoch
    evaluated = evaluate(
        compose_config(
            "evaluate",
            [*TINY_DATA_OVERRIDES, f"data.root={tiny_data_root}", "trainer.device=cpu", "split=val",
             f"checkpoint={run_dir / 'checkpoints' / 'best.pt'}"],
            output_dir=tmp_path / "eval",
        )
    )  # fmt: skip
    ema_scores = [scores["val_ema/loss"], scores["val_ema/ece"]]
    raw_scores = [scores["val/loss"], scores["val/ece"]]
    assert [evaluated["loss"], evaluated["ece"]] == pytest.approx(ema_scores, rel=1e-6)
    assert raw_scores != pytest.approx(ema_scores, rel=1e-6)
    assert best.build_model()(torch.zeros(1, *best.input_size)).shape == (1, 10)
    card = (run_dir / "checkpoints" / "model_card.md").read_text()
    assert best.lineage["data_fingerprint"] in card and f"{metrics['test/accuracy']:.4f}" in card


def test_early_stopping_ends_training_after_patience_epochs(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path
) -> None:
    overrides = [
        *TINY_OVERRIDES, f"data.root={tiny_data_root}", "model.kwargs.width=8", "trainer.max_epochs=5",
        "trainer.early_stopping.patience=1", "trainer.early_stopping.min_delta=1.0",  # no epoch can improve by 1.0
    ]  # fmt: skip
    metrics = train(compose_config("train", overrides))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert metrics["best/epoch"] in (0.0, 1.0) and "test/accuracy" in metrics
