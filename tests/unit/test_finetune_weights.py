"""Pretrained weights: a local weights file loads with a new head; the hub without network fails in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file

from image_classifier.errors import ConfigError
from image_classifier.model import create_model
from tests.conftest import REPO_ROOT, TINY_OVERRIDES


@pytest.fixture(scope="module")
def source_model() -> torch.nn.Module:
    """A timm model with its 1000-class ImageNet head, as a pretrained checkpoint would hold."""
    torch.manual_seed(0)
    return timm.create_model("test_convnext", num_classes=1000).eval()


@pytest.mark.parametrize("fmt", ["state_dict", "checkpoint", "safetensors"])
def test_local_weights_load_into_the_backbone_and_the_head_is_replaced(
    source_model: torch.nn.Module, tmp_path: Path, fmt: str
) -> None:
    state = source_model.state_dict()
    path = tmp_path / ("weights.safetensors" if fmt == "safetensors" else "weights.pt")
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state if fmt == "state_dict" else {"state_dict": state, "epoch": 3}, path)

    model = create_model("test_convnext", num_classes=3, weights=str(path)).eval()
    assert model.get_classifier().out_features == 3
    loaded = model.state_dict()
    backbone = [k for k in state if not k.startswith("head.fc")]
    assert backbone and all(torch.equal(loaded[k], state[k]) for k in backbone)
    with torch.no_grad():
        image = torch.rand(1, 3, 32, 32)
        torch.testing.assert_close(model.forward_features(image), source_model.forward_features(image))


def test_missing_weights_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        create_model("test_convnext", num_classes=3, weights=str(tmp_path / "absent.pt"))


@pytest.mark.slow
def test_train_cli_reports_missing_pretrained_weights_in_one_line(tmp_path: Path, tiny_data_root: Path) -> None:
    command = [
        sys.executable, "-m", "image_classifier.train", *TINY_OVERRIDES, f"data.root={tiny_data_root}",
        "model=timm", "model.name=resnet18", "model.pretrained=true", f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: Cannot get pretrained weights for resnet18")
    assert "model.weights=PATH" in line and "HF_HOME" in line and "Traceback" not in result.stderr


def test_pretrained_without_network_names_both_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ConfigError) as error:
        create_model("resnet18", num_classes=3, pretrained=True)
    message = str(error.value)
    assert "\n" not in message and "model.weights=PATH" in message and "HF_HOME" in message
