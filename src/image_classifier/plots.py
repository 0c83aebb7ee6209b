"""Figures people look at."""

from __future__ import annotations

from pathlib import Path

import torch


def plot_confusion_matrix(
    matrix: torch.Tensor, classes: list[str], path: Path, title: str = "Confusion matrix"
) -> Path:
    """Save a row-normalised confusion matrix with counts and class names on both axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = matrix.cpu().numpy()
    rates = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    size = max(5.0, 0.6 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title(f"{title} (accuracy {counts.trace() / max(counts.sum(), 1):.3f})")
    if len(classes) <= 20:
        for row in range(len(classes)):
            for col in range(len(classes)):
                colour = "white" if rates[row, col] > 0.5 else "black"
                ax.text(col, row, str(int(counts[row, col])), ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
