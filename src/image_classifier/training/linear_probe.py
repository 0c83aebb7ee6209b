"""Linear probe: fit the new classifier head on the pretrained backbone's features before fine-tuning.

The backbone's pooled features of every training image are extracted once (no augmentation, the
evaluation transform), and the head is fitted to them by L2-regularised logistic regression
(full-batch L-BFGS, in memory: seconds). Fine-tuning then starts from a head that already
classifies, so its first steps refine the backbone instead of tearing it apart with the random
head's gradients (linear probing then fine-tuning, "LP-FT", Kumar et al., ICLR 2022). It pays for
one forward pass over the training set, a fraction of an epoch of training.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from image_classifier.errors import ConfigError
from image_classifier.prediction import predict

log = logging.getLogger(__name__)


class PooledFeatures(nn.Module):
    """A timm model's pooled pre-logits features (what its classifier sees) as the forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
            raise ConfigError("trainer.linear_probe needs a timm model (forward_features/forward_head).")
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(images), pre_logits=True)  # type: ignore[operator]


def fit_logistic_regression(
    features: torch.Tensor, targets: torch.Tensor, num_classes: int, weight_decay: float, max_iter: int
) -> nn.Linear:
    """Multinomial logistic regression on ``features`` (N x D) by full-batch L-BFGS, with ``weight_decay`` x |W|^2."""
    torch.manual_seed(0)
    head = nn.Linear(features.shape[1], num_classes)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")
    loss_fn = nn.CrossEntropyLoss()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(head(features), targets) + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


def linear_probe(
    model: nn.Module, loader: DataLoader, probe_cfg: Any, *, device: torch.device, precision: str
) -> dict[str, float]:
    """Fit ``model``'s classifier on the features of ``loader``'s images and install it; returns probe metrics."""
    features, targets = predict(PooledFeatures(model), loader, device=device, precision=precision, desc="features")
    classifier = model.get_classifier()  # type: ignore[operator]
    if not isinstance(classifier, nn.Linear):
        raise ConfigError(f"trainer.linear_probe needs a linear classifier head, {type(model).__name__} has none.")
    head = fit_logistic_regression(
        features.float(),
        targets,
        classifier.out_features,
        weight_decay=float(probe_cfg.get("weight_decay", 1.0e-4)),
        max_iter=int(probe_cfg.get("max_iter", 200)),
    )
    with torch.no_grad():
        classifier.weight.copy_(head.weight)
        classifier.bias.copy_(head.bias)
        accuracy = (head(features.float()).argmax(dim=1) == targets).float().mean().item()
    log.info("linear probe on %d training images: train accuracy %.4f", len(targets), accuracy)
    return {"probe/train_accuracy": accuracy}
