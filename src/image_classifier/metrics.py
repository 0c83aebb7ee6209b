"""Classification metrics from logits, with torchmetrics.

torchmetrics is imported inside the functions: importing it loads scipy and matplotlib, which a
process that has not computed a metric yet does not need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

HEADLINE_METRICS = ("loss", "accuracy", "f1_macro", "ece")
TOP_K = (1, 5)


def headline_metric_names(num_classes: int | None = None, top_k: tuple[int, ...] = TOP_K) -> list[str]:
    """The names :func:`classification_metrics` gives without a ``/`` (top-k only for more than k classes)."""
    return [
        *HEADLINE_METRICS,
        *(f"top{k}_accuracy" for k in top_k if k > 1 and (num_classes is None or k < num_classes)),
    ]


def classification_metrics(
    logits: torch.Tensor, targets: torch.Tensor, classes: list[str], top_k: tuple[int, ...] = TOP_K
) -> dict[str, float]:
    """Flat metrics: loss, accuracy, macro F1, top-k, ECE and per-class precision/recall/F1."""
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_calibration_error,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    n = len(classes)
    probs = logits.float().softmax(dim=1)
    metrics = {
        "loss": F.cross_entropy(logits.float(), targets).item(),
        "accuracy": multiclass_accuracy(probs, targets, num_classes=n, average="micro").item(),
        "f1_macro": multiclass_f1_score(probs, targets, num_classes=n, average="macro").item(),
        "ece": multiclass_calibration_error(probs, targets, num_classes=n, n_bins=15, norm="l1").item(),
    }
    for k in top_k:
        if 1 < k < n:
            metrics[f"top{k}_accuracy"] = multiclass_accuracy(
                probs, targets, num_classes=n, top_k=k, average="micro"
            ).item()
    per_class = {
        "precision": multiclass_precision(probs, targets, num_classes=n, average="none"),
        "recall": multiclass_recall(probs, targets, num_classes=n, average="none"),
        "f1": multiclass_f1_score(probs, targets, num_classes=n, average="none"),
    }
    for name, values in per_class.items():
        for label, value in zip(classes, values.tolist(), strict=True):
            metrics[f"{name}/{label}"] = value
    return metrics


def confusion_matrix(logits: torch.Tensor, targets: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts: rows are true classes, columns predicted classes."""
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    return multiclass_confusion_matrix(logits.argmax(dim=1), targets, num_classes=num_classes)
