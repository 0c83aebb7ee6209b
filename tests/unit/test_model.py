"""Model factory: output shapes, data config, and clear errors for unknown names."""

from __future__ import annotations

import pytest
import torch

from image_classifier.errors import ConfigError
from image_classifier.model import count_parameters, create_model, model_data_config


@pytest.mark.parametrize("name", ["baseline_cnn", "convnextv2_atto", "resnet18"])
def test_output_shape(name: str) -> None:
    model = create_model(name, num_classes=7).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7)


def test_convnextv2_atto_is_the_small_one() -> None:
    assert 3.0e6 < count_parameters(create_model("convnextv2_atto", num_classes=10)) < 4.0e6


def test_data_config_uses_the_models_mean_and_std() -> None:
    config = model_data_config(create_model("convnextv2_atto", num_classes=3), image_size=64, crop_pct=1.0)
    assert config["input_size"] == (3, 64, 64)
    assert config["crop_pct"] == 1.0
    assert config["mean"] == pytest.approx((0.485, 0.456, 0.406))


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match=r"Unknown model 'convnextv2_ato'.*convnextv2_atto"):
        create_model("convnextv2_ato", num_classes=2)


def test_bf16_on_a_cpu_without_native_bfloat16_trains_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulated bfloat16 is slower than float32: a recipe asking for bf16-mixed falls back there, with a warning."""
    from image_classifier import runtime

    cpu = torch.device("cpu")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.usable_precision("bf16-mixed", cpu) == "32"
    assert runtime.usable_precision("16-mixed", cpu) == "16-mixed"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.usable_precision("bf16-mixed", cpu) == "bf16-mixed"
    assert runtime.usable_precision("bf16-mixed", torch.device("meta")) == "bf16-mixed"  # not a CPU: unchanged
