"""Augmentation and normalisation of whole uint8 image batches, on the CPU or the GPU.

The training augmentation is the one timm's ``create_transform`` builds from ``data.augment``
(random resized crop, flips, RandAugment/AutoAugment or colour jitter, normalise, random
erasing), but it starts from a decoded uint8 batch instead of JPEGs and draws every image's
parameters at once: the crops and flips of a batch are one ``grid_sample`` call, the colour
jitter a few batched tensor ops. timm's own auto-augment policies (which run on
PIL images) and random erasing are used as they are. On a CPU that trains with every core, this
keeps augmenting a batch down to a few per cent of a training step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import str_to_pil_interp
from torchvision.transforms import functional as tf

CROP_ATTEMPTS = 10
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


class PilPolicy:
    """timm's auto-augment policy (on PIL images, as timm runs it) applied to each image of a uint8 batch."""

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

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N x 3 x H x W in and out."""
        pixels = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # HWC rows PIL can wrap without a copy
        out = np.stack([np.asarray(self.policy(Image.fromarray(image))) for image in pixels])
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(images.device)


def crop_boxes(
    count: int, height: int, width: int, scale: Sequence[float], ratio: Sequence[float], device: torch.device
) -> torch.Tensor:
    """``count`` random crops ``(x0, y0, w, h)`` drawn as torchvision's ``RandomResizedCrop.get_params`` draws one.

    Each image gets the first of ``CROP_ATTEMPTS`` candidates that fits, or else the whole image
    with its aspect ratio clamped into ``ratio``. The draws come from torch's generator (seeded per
    run and per DataLoader worker); the arithmetic is NumPy's, which is faster on arrays this small.
    """
    draws = torch.rand(count, 2 * CROP_ATTEMPTS + 2, dtype=torch.float64).numpy()
    area_draw, ratio_draw, (x_draw, y_draw) = draws[:, :CROP_ATTEMPTS], draws[:, CROP_ATTEMPTS:-2], draws[:, -2:].T
    target_area = height * width * (scale[0] + (scale[1] - scale[0]) * area_draw)
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_low + (log_high - log_low) * ratio_draw)
    w = np.round(np.sqrt(target_area * aspect))
    h = np.round(np.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.argmax(axis=1)[:, None]
    fallback_w, fallback_h = _fallback_crop(height, width, ratio)
    found = fits.any(axis=1)
    w = np.where(found, np.take_along_axis(w, first, axis=1)[:, 0], fallback_w)
    h = np.where(found, np.take_along_axis(h, first, axis=1)[:, 0], fallback_h)
    x0 = np.floor(x_draw * (width - w + 1))
    y0 = np.floor(y_draw * (height - h + 1))
    return torch.from_numpy(np.stack([x0, y0, w, h], axis=1)).to(device=device, dtype=torch.float32)


def _fallback_crop(height: int, width: int, ratio: Sequence[float]) -> tuple[int, int]:
    in_ratio = width / height
    if in_ratio < min(ratio):
        return width, round(width / min(ratio))
    if in_ratio > max(ratio):
        return round(height * max(ratio)), height
    return width, height


class BatchResizedCrop:
    """Random resized crop and random flips for a float N x C x H x W batch, in one bilinear ``grid_sample`` call.

    Cached training images are at most ``data.cache_scale`` times the output size, so the
    resampling barely ever shrinks an image and needs no antialiasing filter; bilinear rather
    than the model's (often bicubic) eval interpolation, because it costs a third less.
    """

    def __init__(
        self, size: Sequence[int], scale: Sequence[float], ratio: Sequence[float], hflip: float, vflip: float
    ) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.scale, self.ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        self.hflip, self.vflip = float(hflip), float(vflip)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        count, _, height, width = images.shape
        x0, y0, w, h = crop_boxes(count, height, width, self.scale, self.ratio, images.device).unbind(1)
        flip_x = torch.where(torch.rand(count, device=images.device) < self.hflip, -1.0, 1.0)
        flip_y = torch.where(torch.rand(count, device=images.device) < self.vflip, -1.0, 1.0)
        # where each output pixel samples its image, in grid_sample's [-1, 1] coordinates: an axis-aligned
        # scale (negative when flipped) about the crop's centre, so x depends on the column and y on the row only
        out_h, out_w = self.size
        columns = (torch.arange(out_w, device=images.device) * 2 + 1) / out_w - 1
        rows = (torch.arange(out_h, device=images.device) * 2 + 1) / out_h - 1
        x = ((2 * x0 + w) / width - 1)[:, None] + (flip_x * w / width)[:, None] * columns
        y = ((2 * y0 + h) / height - 1)[:, None] + (flip_y * h / height)[:, None] * rows
        grid = torch.stack(torch.broadcast_tensors(x[:, None, :], y[:, :, None]), dim=-1)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class BatchColorJitter:
    """torchvision's ``ColorJitter`` (brightness, contrast, saturation, hue), a factor per image, on [0, 1] floats."""

    def __init__(self, jitter: float | Sequence[float]) -> None:
        values = [float(v) for v in jitter] if isinstance(jitter, Sequence) else [float(jitter)] * 3
        self.brightness, self.contrast, self.saturation = values[:3]
        self.hue = values[3] if len(values) > 3 else 0.0

    @staticmethod
    def _factors(spread: float, count: int, device: torch.device) -> torch.Tensor:
        return torch.empty(count, 1, 1, 1, device=device).uniform_(max(0.0, 1 - spread), 1 + spread)

    @staticmethod
    def _gray(images: torch.Tensor) -> torch.Tensor:
        r, g, b = images.unbind(1)
        return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        count, device = len(images), images.device
        for op in torch.randperm(4).tolist():
            if op == 0 and self.brightness > 0:
                images = (images * self._factors(self.brightness, count, device)).clamp_(0, 1)
            elif op == 1 and self.contrast > 0:
                mean = self._gray(images).mean(dim=(1, 2, 3), keepdim=True)
                images = torch.lerp(mean, images, self._factors(self.contrast, count, device)).clamp_(0, 1)
            elif op == 2 and self.saturation > 0:
                images = torch.lerp(self._gray(images), images, self._factors(self.saturation, count, device))
                images = images.clamp_(0, 1)
            elif op == 3 and self.hue > 0:
                shifts = torch.empty(count).uniform_(-self.hue, self.hue).tolist()
                images = torch.stack([tf.adjust_hue(image, shift) for image, shift in zip(images, shifts, strict=True)])
        return images


class Normalize:
    """uint8 batch -> float32 in [0, 1] -> (x - mean) / std, with the arithmetic of ``to_tensor`` + ``Normalize``.

    Applied to a batch it gives bit-identical results to the per-image eval transform.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.to(dtype=torch.float32).div(255)
        return tf.normalize(images, self.mean, self.std, inplace=True)


class TrainAugment:
    """The whole training augmentation for a uint8 batch: crop and flips, policy or jitter, normalise, erasing.

    Resampling (the crop, the policy's rotations and shears) is bilinear whatever the model's eval
    interpolation: it is the cheaper kernel, and these images are barely ever shrunk.

    With a ``device`` the batch is moved there first (uint8: a quarter of the float bytes) and augmented there.
    """

    def __init__(self, augment: Any, data_config: dict[str, Any], device: torch.device | None = None) -> None:
        self.device = device
        size = data_config["input_size"][-2:]
        self.crop = BatchResizedCrop(size, augment.scale, augment.ratio, augment.hflip, augment.vflip)
        policy = augment.get("auto_augment")
        self.policy = PilPolicy(str(policy), min(size), data_config["mean"], "bilinear") if policy else None
        jitter = augment.get("color_jitter")
        use_jitter = jitter is not None and (not policy or "3a" in str(policy))  # timm: a policy replaces jitter
        self.jitter = BatchColorJitter(jitter) if use_jitter else None
        self.normalize = Normalize(data_config["mean"], data_config["std"])
        re_prob = float(augment.get("re_prob") or 0.0)
        self.erase = RandomErasing(re_prob, mode="pixel", device="cpu") if re_prob > 0 else None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.device is not None:
            images = images.to(self.device, non_blocking=True)
        batch = self.crop(images.to(torch.float32))
        if self.policy is not None:
            policed = self.policy(batch.round_().clamp_(0, 255).to(torch.uint8))  # channels-last from PIL
            batch = policed.to(torch.float32, memory_format=torch.contiguous_format)
        batch = batch.div_(255)
        if self.jitter is not None:
            batch = self.jitter(batch)
        batch = self.normalize(batch)
        if self.erase is not None:
            self.erase.device = batch.device
            batch = self.erase(batch)
        return batch
