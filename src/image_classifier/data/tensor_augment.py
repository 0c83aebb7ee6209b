"""Augmentation and normalisation of whole uint8 image batches, on the CPU or the GPU.

The training augmentation is the one timm's ``create_transform`` builds from ``data.augment``
(random resized crop, flips, RandAugment/AutoAugment or colour jitter, normalise, random
erasing), but it starts from a decoded uint8 batch instead of JPEGs and draws every image's
parameters at once: crops are drawn in each photo's real geometry and resized with antialiasing
on uint8 pixels, the colour jitter is a few batched tensor ops. timm's own auto-augment policies (which run on
PIL images) and random erasing are used as they are. On a CPU that trains with every core, this
keeps augmenting a batch down to a few per cent of a training step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from PIL import Image
from timm.data.auto_augment import augment_and_mix_transform, auto_augment_transform, rand_augment_transform
from timm.data.random_erasing import RandomErasing
from timm.data.transforms import str_to_pil_interp
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as tf
from torchvision.transforms.v2 import functional as tf2

from image_classifier.preprocess import Normalize

CROP_ATTEMPTS = 10
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


class PilPolicy:
    """timm's auto-augment policy (on PIL images, as timm runs it) applied to each image of a uint8 batch."""

    def __init__(self, policy: str, size: int, mean: Sequence[float], interpolation: str) -> None:
        params: dict[str, Any] = {
            "translate_const": int(size * 0.45),
            "img_mean": tuple(min(255, round(255 * m)) for m in mean),
        }
        if interpolation != "random":  # timm's policies draw bilinear or bicubic themselves by default
            params["interpolation"] = str_to_pil_interp(interpolation)
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
    count: int,
    height: float | np.ndarray,
    width: float | np.ndarray,
    scale: Sequence[float],
    ratio: Sequence[float],
    device: torch.device,
) -> torch.Tensor:
    """``count`` random crops ``(x0, y0, w, h)`` drawn as torchvision's ``RandomResizedCrop.get_params`` draws one.

    ``height`` and ``width`` are one size for every image or one per image. Each image gets the
    first of ``CROP_ATTEMPTS`` candidates that fits, or else the whole image with its aspect ratio
    clamped into ``ratio``. The draws come from torch's generator (seeded per run and per DataLoader
    worker); the arithmetic is NumPy's, which is faster on arrays this small.
    """
    heights = np.broadcast_to(np.asarray(height, dtype=np.float64), (count,))[:, None]
    widths = np.broadcast_to(np.asarray(width, dtype=np.float64), (count,))[:, None]
    draws = torch.rand(count, 2 * CROP_ATTEMPTS + 2, dtype=torch.float64).numpy()
    area_draw, ratio_draw, (x_draw, y_draw) = draws[:, :CROP_ATTEMPTS], draws[:, CROP_ATTEMPTS:-2], draws[:, -2:].T
    target_area = heights * widths * (scale[0] + (scale[1] - scale[0]) * area_draw)
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = np.exp(log_low + (log_high - log_low) * ratio_draw)
    w = np.round(np.sqrt(target_area * aspect))
    h = np.round(np.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= widths) & (h > 0) & (h <= heights)
    first = fits.argmax(axis=1)[:, None]
    fallback_w, fallback_h = _fallback_crop(heights[:, 0], widths[:, 0], ratio)
    found = fits.any(axis=1)
    w = np.where(found, np.take_along_axis(w, first, axis=1)[:, 0], fallback_w)
    h = np.where(found, np.take_along_axis(h, first, axis=1)[:, 0], fallback_h)
    x0 = np.floor(x_draw * (widths[:, 0] - w + 1))
    y0 = np.floor(y_draw * (heights[:, 0] - h + 1))
    return torch.from_numpy(np.stack([x0, y0, w, h], axis=1)).to(device=device, dtype=torch.float32)


def _fallback_crop(height: np.ndarray, width: np.ndarray, ratio: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The whole image, its aspect ratio clamped into ``ratio`` (torchvision's fallback), per image."""
    in_ratio = width / height
    narrow, wide = in_ratio < min(ratio), in_ratio > max(ratio)
    w = np.where(narrow, width, np.where(wide, np.round(height * max(ratio)), width))
    h = np.where(narrow, np.round(width / min(ratio)), height)
    return w, h


def canvas_scale(heights: np.ndarray, widths: np.ndarray, side: int) -> np.ndarray:
    """How much each photo is shrunk to fit the training cache's ``side`` x ``side`` canvas (1: it fits as it is)."""
    return np.minimum(1.0, side / np.maximum(heights, widths))


def stored_size(heights: np.ndarray, widths: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Each photo's height and width on the training cache's ``side`` x ``side`` canvas."""
    scale = canvas_scale(heights, widths, side)
    height, width = (np.maximum(1, np.round(sides * scale)).astype(np.int64) for sides in (heights, widths))
    return height, width


class BatchResizedCrop:
    """Random resized crop and random flips for a uint8 N x C x H x W batch, antialiased like PIL's resize.

    Cached training images are stored at the top left of a square canvas, shrunk to fit when larger
    (:class:`image_classifier.data.cache.FitInSquare`); ``sizes`` gives each image's real height and
    width, so crops are drawn in the real photo's geometry (its aspect ratio and its whole area, sides
    included) and mapped onto the stored pixels. Each crop is resized with
    antialiasing and the model's interpolation (``random``: bilinear or bicubic per image, as timm
    draws it), so a crop is as sharp as timm's PIL transform makes it: a bilinear crop of a model
    evaluated bicubic trains on blurrier pixels than it is tested on.
    """

    def __init__(
        self,
        size: Sequence[int],
        scale: Sequence[float],
        ratio: Sequence[float],
        hflip: float,
        vflip: float,
        interpolation: str = "bilinear",
    ) -> None:
        self.size = [int(size[0]), int(size[1])]
        self.scale, self.ratio = tuple(float(s) for s in scale), tuple(float(r) for r in ratio)
        self.hflip, self.vflip = float(hflip), float(vflip)
        random_modes = [InterpolationMode.BILINEAR, InterpolationMode.BICUBIC]
        self.modes = random_modes if interpolation == "random" else [InterpolationMode(interpolation)]

    def __call__(self, images: torch.Tensor, sizes: np.ndarray | None = None) -> torch.Tensor:
        """``images`` uint8 N x C x H x W; ``sizes`` N x 2 real (height, width), default the stored size."""
        count, _, height, width = images.shape
        real = np.asarray(sizes, dtype=np.float64) if sizes is not None else np.array([[height, width]] * count)
        x0, y0, w, h = crop_boxes(count, real[:, 0], real[:, 1], self.scale, self.ratio, torch.device("cpu")).T
        side = min(height, width) if sizes is not None else max(height, width)  # no sizes: the images as stored
        scale = torch.from_numpy(canvas_scale(real[:, 0], real[:, 1], side)).float()
        left, top = (x0 * scale).floor().long(), (y0 * scale).floor().long()
        stored_h, stored_w = (torch.from_numpy(n) for n in stored_size(real[:, 0], real[:, 1], side))
        crop_w = torch.minimum((w * scale).round().clamp_(min=1).long(), stored_w - left).clamp_(min=1).tolist()
        crop_h = torch.minimum((h * scale).round().clamp_(min=1).long(), stored_h - top).clamp_(min=1).tolist()
        left, top = left.tolist(), top.tolist()
        flip_x = (torch.rand(count) < self.hflip).tolist()
        flip_y = (torch.rand(count) < self.vflip).tolist()
        modes = [self.modes[i] for i in torch.randint(len(self.modes), (count,)).tolist()]
        out = torch.empty((count, images.shape[1], *self.size), dtype=images.dtype, device=images.device)
        with one_cpu_thread():
            for i, image in enumerate(images):
                crop = tf2.resized_crop(
                    image, top[i], left[i], crop_h[i], crop_w[i], self.size, interpolation=modes[i], antialias=True
                )
                crop = crop.flip(-1) if flip_x[i] else crop
                out[i] = crop.flip(-2) if flip_y[i] else crop
        return out


@contextmanager
def one_cpu_thread() -> Iterator[None]:
    """Run per-image CPU ops on one thread: splitting each small resize over cores costs more than it saves."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


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


class TrainAugment:
    """The whole training augmentation for a uint8 batch: crop and flips, policy or jitter, normalise, erasing.

    The crop and the policy's rotations and shears are resampled with the model's interpolation
    (``data_config["interpolation"]``), as timm's transform resamples them.

    With a ``device`` the batch is moved there first (uint8: a quarter of the float bytes) and augmented there.
    """

    def __init__(self, augment: Any, data_config: dict[str, Any], device: torch.device | None = None) -> None:
        self.device = device
        size = data_config["input_size"][-2:]
        interpolation = str(data_config.get("interpolation") or "bilinear")
        self.crop = BatchResizedCrop(size, augment.scale, augment.ratio, augment.hflip, augment.vflip, interpolation)
        policy = augment.get("auto_augment")
        self.policy = PilPolicy(str(policy), min(size), data_config["mean"], interpolation) if policy else None
        jitter = augment.get("color_jitter")
        use_jitter = jitter is not None and (not policy or "3a" in str(policy))  # timm: a policy replaces jitter
        self.jitter = BatchColorJitter(jitter) if use_jitter else None
        self.normalize = Normalize(data_config["mean"], data_config["std"])
        re_prob = float(augment.get("re_prob") or 0.0)
        re_mode = str(augment.get("re_mode") or "pixel")
        self.erase = RandomErasing(re_prob, mode=re_mode, device="cpu") if re_prob > 0 else None

    def __call__(self, images: torch.Tensor, sizes: np.ndarray | None = None) -> torch.Tensor:
        """uint8 N x 3 x H x W (``sizes``: each image's real height and width) -> normalised float32 batch."""
        if self.device is not None:
            images = images.to(self.device, non_blocking=True)
        batch = self.crop(images, sizes)
        if self.policy is not None:
            batch = self.policy(batch)
        batch = batch.to(torch.float32, memory_format=torch.contiguous_format).div_(255)
        if self.jitter is not None:
            batch = self.jitter(batch)
        batch = self.normalize(batch)
        if self.erase is not None:
            self.erase.device = batch.device
            batch = self.erase(batch)
        return batch
