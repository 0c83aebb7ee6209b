"""Hydra entry point: ``python -m image_classifier.evaluate checkpoint=PATH [overrides]``."""

from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig

from image_classifier.checkpoint import load_bundle
from image_classifier.config.checks import check_evaluate_config
from image_classifier.config.entry import hydra_entry
from image_classifier.metrics import classification_metrics, confusion_matrix
from image_classifier.plots import plot_confusion_matrix
from image_classifier.prediction import predict
from image_classifier.reporting import print_metrics_table, print_per_class_table, write_metrics
from image_classifier.run_parts import bundle_run_parts
from image_classifier.runtime import select_device

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate a bundle on one split; writes metrics.json, predictions.csv and the confusion matrix."""
    check_evaluate_config(cfg)
    bundle = load_bundle(cfg.checkpoint)
    device = select_device(cfg.trainer.device)
    parts = bundle_run_parts(cfg, bundle, device)
    output_dir = Path(cfg.paths.output_dir)
    loader = parts.loader(cfg.split)
    model = parts.model.to(device)
    logits, targets = predict(model, loader, device=device, precision=str(cfg.trainer.precision), desc=cfg.split)

    metrics = classification_metrics(logits, targets, bundle.classes)
    matrix = confusion_matrix(logits, targets, len(bundle.classes))
    write_metrics(output_dir / "metrics.json", metrics)
    plot_confusion_matrix(
        matrix, bundle.classes, output_dir / "figures" / "confusion_matrix.png", title=f"{cfg.split} confusion matrix"
    )
    write_predictions(output_dir / "predictions.csv", loader.dataset.samples, logits, bundle.classes)  # type: ignore[attr-defined]
    if cfg.get("report_dir"):
        publish(output_dir, Path(cfg.report_dir))
    print_metrics_table(
        {f"{cfg.split}/{k}": v for k, v in metrics.items()}, title=f"{cfg.checkpoint} on {cfg.data.name}"
    )
    print_per_class_table(metrics)
    log.info("Wrote %s", output_dir)
    return metrics


def write_predictions(path: Path, samples: list[tuple[str, int]], logits: torch.Tensor, classes: list[str]) -> None:
    """One row per image: path, true class, predicted class, confidence."""
    probs = logits.softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "prediction", "confidence"])
        for (image_path, target), pred, conf in zip(samples, predicted.tolist(), confidence.tolist(), strict=True):
            writer.writerow([image_path, classes[target], classes[pred], f"{conf:.6f}"])


def publish(output_dir: Path, report_dir: Path) -> None:
    """Copy the metrics and figures to ``report_dir`` (the pipeline's reports/)."""
    (report_dir / "figures").mkdir(parents=True, exist_ok=True)
    shutil.copy2(output_dir / "metrics.json", report_dir / "metrics.json")
    shutil.copy2(output_dir / "figures" / "confusion_matrix.png", report_dir / "figures" / "confusion_matrix.png")


@hydra_entry("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
