"""Metrics from logits."""

from __future__ import annotations

import pytest
import torch

from image_classifier.metrics import classification_metrics, confusion_matrix

CLASSES = ["a", "b", "c"]


def test_perfect_predictions() -> None:
    targets = torch.tensor([0, 1, 2, 2])
    logits = torch.nn.functional.one_hot(targets, 3).float() * 20
    metrics = classification_metrics(logits, targets, CLASSES, top_k=(1, 2))
    assert metrics["accuracy"] == 1.0 and metrics["f1_macro"] == 1.0 and metrics["top2_accuracy"] == 1.0
    assert metrics["recall/c"] == 1.0
    assert metrics["ece"] < 1e-3


def test_mistakes_show_in_per_class_scores_and_confusion_matrix() -> None:
    targets = torch.tensor([0, 0, 1, 2])
    predicted = torch.tensor([0, 1, 1, 2])
    logits = torch.nn.functional.one_hot(predicted, 3).float() * 5
    metrics = classification_metrics(logits, targets, CLASSES, top_k=(1, 2))
    assert metrics["accuracy"] == pytest.approx(0.75)
    assert metrics["recall/a"] == pytest.approx(0.5)
    assert metrics["precision/b"] == pytest.approx(0.5)
    assert confusion_matrix(logits, targets, 3).tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
