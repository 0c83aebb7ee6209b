"""Metrics files and the final metrics table."""

from __future__ import annotations

import json
from pathlib import Path

from image_classifier.atomic import write_text_atomic


def write_metrics(path: Path, metrics: dict[str, float]) -> Path:
    """Write flat numeric metrics as JSON, atomically."""
    return write_text_atomic(path, json.dumps({k: float(v) for k, v in sorted(metrics.items())}, indent=2) + "\n")


def print_metrics_table(metrics: dict[str, float], title: str) -> None:
    """Headline metrics (``split/name`` keys) as a table: splits are rows, metrics columns."""
    from rich.console import Console
    from rich.table import Table

    order = ["train", "val", "test"]
    headline = {k: v for k, v in metrics.items() if k.count("/") == 1 and k.split("/")[0] in order}
    splits = sorted({k.split("/")[0] for k in headline}, key=order.index)
    names = list(dict.fromkeys(k.split("/")[1] for k in headline))
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    for name in names:
        table.add_column(name, justify="right")
    for split in splits:
        table.add_row(split, *(f"{headline[f'{split}/{n}']:.4f}" if f"{split}/{n}" in headline else "" for n in names))
    Console(width=max(100, 14 * (len(names) + 1))).print(table)


def print_per_class_table(metrics: dict[str, float]) -> None:
    """Per-class precision, recall and F1 from ``precision/<class>``-style keys."""
    from rich.console import Console
    from rich.table import Table

    classes = list(dict.fromkeys(k.split("/", 1)[1] for k in metrics if k.startswith("f1/")))
    table = Table(title="Per class", title_justify="left")
    for column in ("class", "precision", "recall", "f1"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for label in classes:
        table.add_row(label, *(f"{metrics[f'{m}/{label}']:.4f}" for m in ("precision", "recall", "f1")))
    Console(width=100).print(table)
