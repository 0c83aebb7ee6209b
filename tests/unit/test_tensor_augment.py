"""Batched training augmentation: every image its own crop, flip and colour factors, as the per-image ops give."""

from __future__ import annotations

import math

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from image_classifier.data.cache import FitInSquare
from image_classifier.data.tensor_augment import BatchColorJitter, BatchResizedCrop, crop_boxes


def test_crop_boxes_lie_inside_the_image_with_the_configured_area_and_aspect() -> None:
    torch.manual_seed(0)
    boxes = crop_boxes(4000, 60, 80, scale=(0.2, 0.9), ratio=(0.75, 1.3333), device=torch.device("cpu"))
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 80).all() and (y0 + h <= 60).all()
    area = w * h / (60 * 80)
    assert area.min() > 0.18 and area.max() < 0.92  # rounding to whole pixels moves the bounds a little
    assert (w / h).min() > 0.7 and (w / h).max() < 1.4
    assert len({tuple(box) for box in boxes.tolist()}) > 3000  # each image draws its own crop


def test_crop_boxes_fall_back_to_the_whole_image_clamped_to_the_ratio() -> None:
    boxes = crop_boxes(8, 10, 100, scale=(1.0, 1.0), ratio=(1.0, 2.0), device=torch.device("cpu"))
    assert boxes.tolist() == [[boxes[i, 0].item(), 0.0, 20.0, 10.0] for i in range(8)]


def test_crop_boxes_are_drawn_in_each_images_own_size() -> None:
    torch.manual_seed(0)
    heights, widths = np.array([60, 30] * 500), np.array([80, 120] * 500)
    x0, y0, w, h = crop_boxes(1000, heights, widths, (0.2, 0.9), (0.75, 1.3333), torch.device("cpu")).numpy().T
    assert (x0 + w <= widths).all() and (y0 + h <= heights).all()
    area = w * h / (heights * widths)
    assert area.min() > 0.18 and area.max() < 0.92
    assert (x0[1::2] + w[1::2] > 80).any()  # the wide images' crops reach beyond the narrow ones' width


def test_batched_crop_equals_per_image_antialiased_resized_crop() -> None:
    images = (torch.rand(6, 3, 37, 45) * 255).to(torch.uint8)
    crop = BatchResizedCrop((16, 20), scale=(0.3, 1.0), ratio=(0.5, 2.0), hflip=0.0, vflip=0.0)
    torch.manual_seed(1)
    boxes = crop_boxes(6, 37, 45, crop.scale, crop.ratio, torch.device("cpu")).int().tolist()
    torch.manual_seed(1)
    out = crop(images)
    assert out.shape == (6, 3, 16, 20) and out.dtype == torch.uint8
    for image, result, (x0, y0, w, h) in zip(images, out, boxes, strict=True):
        assert torch.equal(result, F.resized_crop(image, y0, x0, h, w, [16, 20], antialias=True))


def test_a_shrunk_photo_is_cropped_in_its_real_geometry_sides_included() -> None:
    """A 40 x 80 photo on a 40 x 40 canvas (shrunk to 20 x 40, black below): the whole-photo crop at ratio 2 is
    the photo itself, resized, with none of the canvas's padding."""
    photo = torch.zeros(3, 40, 80, dtype=torch.uint8)
    photo[..., :8] = 255  # a white band on the left side, which a centre crop would lose
    photo[..., 36:44] = 128
    stored = FitInSquare(40, "bilinear")(F.to_pil_image(photo))
    assert stored.size == (40, 40) and np.asarray(stored)[20:].max() == 0  # shrunk to fit, aspect kept
    crop = BatchResizedCrop((20, 40), scale=(1.0, 1.0), ratio=(2.0, 2.0), hflip=0.0, vflip=0.0)
    out = crop(F.pil_to_tensor(stored)[None], np.array([[40, 80]]))
    expected = F.resize(photo, [20, 40], antialias=True)
    assert (out[..., :3] > 240).all() and out[..., -1, :].float().mean() > 10  # no black row from the padding
    assert (out[0].float() - expected.float()).abs().mean() < 8


def test_a_photo_that_fits_is_cropped_from_its_own_pixels() -> None:
    """A photo smaller than the canvas is stored as decoded: a crop of it equals timm's crop of the photo."""
    photo = (torch.rand(3, 30, 50) * 255).to(torch.uint8)
    stored = F.pil_to_tensor(FitInSquare(64, "bicubic")(F.to_pil_image(photo)))
    assert torch.equal(stored[:, :30, :50], photo) and stored[:, 30:].max() == 0
    crop = BatchResizedCrop(
        (16, 16), scale=(0.3, 1.0), ratio=(0.75, 1.3333), hflip=0.0, vflip=0.0, interpolation="bicubic"
    )
    torch.manual_seed(3)
    x0, y0, w, h = crop_boxes(1, 30, 50, crop.scale, crop.ratio, torch.device("cpu")).int()[0].tolist()
    torch.manual_seed(3)
    out = crop(stored[None], np.array([[30, 50]]))[0]
    expected = F.resized_crop(photo, y0, x0, h, w, [16, 16], interpolation=F.InterpolationMode.BICUBIC, antialias=True)
    assert torch.equal(out, expected)


def test_flips_are_drawn_per_image() -> None:
    images = torch.arange(4 * 3 * 8 * 8).reshape(4, 3, 8, 8).to(torch.uint8)
    always = BatchResizedCrop((8, 8), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=1.0, vflip=1.0)
    assert torch.equal(always(images), images.flip(-1).flip(-2))
    torch.manual_seed(0)
    sometimes = BatchResizedCrop((8, 8), scale=(1.0, 1.0), ratio=(1.0, 1.0), hflip=0.5, vflip=0.0)
    out = sometimes(images.repeat(16, 1, 1, 1))
    flipped = [torch.equal(image, images[0].flip(-1)) for image in out[::4]]
    assert 0 < sum(flipped) < len(flipped)


def test_colour_jitter_draws_a_factor_per_image_and_stays_in_range() -> None:
    torch.manual_seed(0)
    images = torch.full((64, 3, 4, 4), 0.5)
    out = BatchColorJitter((0.4, 0.0, 0.0))(images)  # brightness only
    means = out.mean(dim=(1, 2, 3))
    assert out.min() >= 0 and out.max() <= 1
    assert 0.3 <= means.min() < 0.35 and 0.65 < means.max() <= 0.7
    assert len(set(means.tolist())) == 64
    grey = torch.rand(8, 1, 4, 4).expand(8, 3, 4, 4)
    assert torch.allclose(BatchColorJitter(0.4)(grey.clone()).std(dim=1), torch.zeros(8, 4, 4), atol=1e-6)
    assert not math.isnan(float(BatchColorJitter((0.0, 0.0, 0.0, 0.1))(torch.rand(2, 3, 4, 4)).sum()))
