"""Hydra entry point: ``python -m image_classifier.train [overrides]``; ``train(cfg)`` returns metrics."""

from __future__ import annotations

from omegaconf import DictConfig

from image_classifier.config.checks import check_train_config
from image_classifier.config.entry import hydra_entry
from image_classifier.training.recipe import run_training


def train(cfg: DictConfig) -> dict[str, float]:
    """Check every setting, then run the recipe: set up, fit, test the best weights, publish. Flat metrics."""
    check_train_config(cfg)
    return run_training(cfg)


@hydra_entry("train")
def main(cfg: DictConfig) -> float | None:
    """The metric named by ``optimized_metric`` (for sweeps), after training."""
    metrics = train(cfg)
    objective = cfg.get("optimized_metric")
    return metrics.get(objective) if objective else None


if __name__ == "__main__":
    main()
