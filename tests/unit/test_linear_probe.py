"""Linear probe: the new head is fitted on the backbone's features and installed; BatchNorm statistics can be frozen."""

from __future__ import annotations

import pytest
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

from image_classifier.errors import ConfigError
from image_classifier.model import BaselineCNN
from image_classifier.training.finetune import freeze_batchnorm_statistics
from image_classifier.training.linear_probe import PooledFeatures, fit_logistic_regression, linear_probe


def test_logistic_regression_separates_separable_features_and_weight_decay_shrinks_it() -> None:
    torch.manual_seed(0)
    targets = torch.arange(3).repeat(40)
    features = torch.randn(120, 16) * 0.3 + torch.eye(3, 16)[targets] * 2
    loose = fit_logistic_regression(features, targets, 3, weight_decay=1e-4, max_iter=100)
    tight = fit_logistic_regression(features, targets, 3, weight_decay=1.0, max_iter=100)
    assert (loose(features).argmax(dim=1) == targets).all()
    assert tight.weight.norm() < loose.weight.norm() / 2


def test_probe_installs_a_head_that_classifies_the_training_images() -> None:
    """Images whose class is their colour: a random timm backbone's pooled features separate them linearly."""
    torch.manual_seed(0)
    targets = torch.arange(3).repeat(16)
    images = torch.rand(48, 3, 32, 32) * 0.5 + torch.eye(3)[targets][:, :, None, None]
    model = timm.create_model("test_efficientnet", num_classes=3).eval()
    before = model.get_classifier().weight.detach().clone()
    loader = DataLoader(TensorDataset(images, targets), batch_size=16)
    metrics = linear_probe(model, loader, {"weight_decay": 1e-4}, device=torch.device("cpu"), precision="32")
    with torch.no_grad():
        predicted = model(images).argmax(dim=1)
    assert not torch.equal(model.get_classifier().weight, before)
    assert metrics["probe/train_accuracy"] == pytest.approx((predicted == targets).float().mean().item())
    assert metrics["probe/train_accuracy"] >= 0.9


def test_probe_needs_a_timm_model() -> None:
    with pytest.raises(ConfigError, match="needs a timm model"):
        PooledFeatures(BaselineCNN(num_classes=3))


def test_frozen_batchnorm_statistics_stay_at_their_pretrained_values() -> None:
    model = timm.create_model("test_efficientnet", num_classes=3)
    means = {name: b.clone() for name, b in model.named_buffers() if name.endswith("running_mean")}
    assert freeze_batchnorm_statistics(model) > 0
    model.train()
    model(torch.rand(4, 3, 32, 32) * 5 + 3)  # far from the statistics the weights expect
    assert all(torch.equal(b, means[name]) for name, b in model.named_buffers() if name in means)
