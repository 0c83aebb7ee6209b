"""Augmentation and normalisation on uint8 image tensors, on the CPU or the GPU.

The training augmentation is the one timm's ``create_transform`` builds from ``data.augment``
(random resized crop, flips, RandAugment/AutoAugment or colour jitter, normalise, random
erasing), but it starts from a decoded uint8 tensor instead of a JPEG: torchvision's
``transforms.v2`` ops for the geometry and colour, timm's own auto-augment and random erasing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import str_to_pil_interp
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms import functional as tf


def _interpolation(name: str) -> InterpolationMode:
    return InterpolationMode(name) if name in {mode.value for mode in InterpolationMode} else InterpolationMode.BILINEAR


class PilPolicy:
    """timm's auto-augment policy (on PIL images, as timm runs it) applied to a uint8 CHW tensor."""

    def __init__(self, policy: str, size: int, mean: Sequence[float], interpolation: str) -> None:
        params: dict[str, Any] = {
            "translate_const": int(size * 0.45),
            "img_mean": tuple(min(255, round(255 * m)) for m in mean),
            "interpolation": str_to_pil_interp(interpolation),
        }
        if policy.startswith("rand"):
            self.policy = rand_augment_transform(policy, params)
        elif policy.startswith("augmix"):
            self.policy = augment_and_mix_transform(policy, params | {"translate_pct": 0.3})
        else:
            self.policy = auto_augment_transform(policy, params)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return tf.pil_to_tensor(self.policy(tf.to_pil_image(image.cpu()))).to(image.device)


def sample_augmentation(augment: Any, data_config: dict[str, Any]) -> v2.Compose:
    """The per-image part of the training augmentation (flips are batched): uint8 CHW tensor in, uint8 out."""
    size = tuple(data_config["input_size"][-2:])
    interpolation = str(data_config.get("interpolation", "bilinear"))
    ops: list[Any] = [
        v2.RandomResizedCrop(
            size,
            scale=tuple(augment.scale),
            ratio=tuple(augment.ratio),
            interpolation=_interpolation(interpolation),
            antialias=True,
        )
    ]
    policy = augment.get("auto_augment")
    if policy:
        ops.append(PilPolicy(str(policy), min(size), data_config["mean"], interpolation))
    if augment.get("color_jitter") is not None and not (policy and "3a" not in str(policy)):
        jitter = augment.color_jitter
        values = tuple(float(v) for v in jitter) if isinstance(jitter, Sequence) else (float(jitter),) * 3
        ops.append(v2.ColorJitter(*values))
    return v2.Compose(ops)


class Normalize:
    """uint8 batch -> float32 in [0, 1] -> (x - mean) / std, with the arithmetic of ``to_tensor`` + ``Normalize``.

    Applied to a batch it gives bit-identical results to the per-image eval transform.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return tf.normalize(images.to(dtype=torch.float32).div(255), self.mean, self.std, inplace=True)


class TrainAugment:
    """The whole training augmentation for a uint8 batch: per-image ops, flips, normalise, random erasing.

    With a ``device`` the batch is moved there first (uint8: a quarter of the float bytes) and augmented there.
    """

    def __init__(self, augment: Any, data_config: dict[str, Any], device: torch.device | None = None) -> None:
        self.device = device
        self.per_image = sample_augmentation(augment, data_config)
        self.hflip, self.vflip = float(augment.hflip), float(augment.vflip)
        self.normalize = Normalize(data_config["mean"], data_config["std"])
        re_prob = float(augment.get("re_prob") or 0.0)
        self.erase = RandomErasing(re_prob, mode="pixel", device="cpu") if re_prob > 0 else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.device is not None:
            images = images.to(self.device, non_blocking=True)
        batch = torch.stack([self.per_image(image) for image in images])
        for p, dim in ((self.hflip, -1), (self.vflip, -2)):
            if p > 0:
                flip = torch.rand(len(batch), device=batch.device) < p
                batch[flip] = batch[flip].flip(dim)
        batch = self.normalize(batch)
        if self.erase is not None:
            self.erase.device = batch.device
            batch = self.erase(batch)
        return batch
