"""The Pillow + numpy evaluation transform that ONNX serving uses gives what timm's evaluation transform gives:
the same uint8 pixels after the resize and crop, and the same normalised tensors, on real photos and odd images."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_classifier.api.eval_transform import EvalTransform
from image_classifier.errors import ConfigError
from image_classifier.preprocess import eval_transform, split_eval_transform

IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
CONFIGS = [
    {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center", **IMAGENET},
    {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center", **IMAGENET},
    {"input_size": (3, 40, 56), "interpolation": "lanczos", "crop_pct": 0.95, "crop_mode": "center", **IMAGENET},
    {"input_size": (3, 48, 48), "interpolation": "nearest", "crop_pct": 0.9, "crop_mode": "squash", **IMAGENET},
    {"input_size": (3, 64, 64), "interpolation": "box", "crop_pct": 1.0, "crop_mode": "border", **IMAGENET},
    {"input_size": (3, 36, 36), "interpolation": "hamming", "crop_pct": 0.875, "mean": (0.5,) * 3, "std": (0.5,) * 3},
]
CONFIG_IDS = [f"{c['interpolation']}-{c.get('crop_mode', 'default')}-{c['input_size'][1]}" for c in CONFIGS]


def random_image(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    bands = len(Image.new(mode, (1, 1)).getbands())
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if bands == 1 else pixels, mode=mode)


ODD_IMAGES = {
    "1x1": random_image("RGB", (1, 1)),
    "very-wide": random_image("RGB", (1200, 5)),
    "very-tall": random_image("RGB", (4, 900)),
    "grayscale": random_image("L", (77, 53)),
    "cmyk": random_image("CMYK", (61, 90)),
    "rgba": random_image("RGBA", (50, 50)),
    "palette": random_image("RGB", (45, 70)).quantize(64),
    "exact-size": random_image("RGB", (224, 224)),
}


def as_loaded(image: Image.Image) -> Image.Image:
    """The image as the training loader and the API open it: converted to RGB."""
    return image.convert("RGB")


def assert_same_as_timm(config: dict[str, object], image: Image.Image) -> None:
    timm_transform = eval_transform(config)
    parts = split_eval_transform(timm_transform)
    assert parts is not None
    resize_crop, _ = parts
    ours = EvalTransform(config)
    expected_pixels = np.asarray(resize_crop(as_loaded(image)), dtype=np.uint8).transpose(2, 0, 1)
    pixels = ours.pixels(image)
    assert pixels.dtype == np.uint8 and pixels.shape == (3, *config["input_size"][1:])  # type: ignore[index]
    np.testing.assert_array_equal(pixels, expected_pixels)
    expected = timm_transform(as_loaded(image)).numpy()
    tensor = ours(image)
    assert tensor.dtype == np.float32 and tensor.shape == expected.shape
    np.testing.assert_allclose(tensor, expected, rtol=0, atol=1e-6)


ODD_CASES = [  # timm's border mode itself fails on the very wide and very tall images (they round to 0 pixels)
    pytest.param(config, name, id=f"{name}-{config_id}")
    for config, config_id in zip(CONFIGS, CONFIG_IDS, strict=True)
    for name in ODD_IMAGES
    if not (config.get("crop_mode") == "border" and name.startswith("very-"))
]


@pytest.mark.parametrize(("config", "name"), ODD_CASES)
def test_odd_images_give_timms_pixels_and_tensors(config: dict[str, object], name: str) -> None:
    assert_same_as_timm(config, ODD_IMAGES[name])


def sample_photos(root: Path, count: int = 12) -> list[Path]:
    suffixes = {".jpg", ".jpeg", ".png"}
    photos = sorted(path for path in root.rglob("*") if path.suffix.lower() in suffixes)
    return photos[:: max(1, len(photos) // count)][:count]


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_real_photos_give_timms_pixels_and_tensors(config: dict[str, object], shared_data: Path) -> None:
    photos = sample_photos(shared_data)
    assert photos, f"no photos under {shared_data}"
    for path in photos:
        with Image.open(path) as image:
            image.load()
            assert_same_as_timm(config, image)


def test_a_batch_normalises_as_each_image_does() -> None:
    ours = EvalTransform(CONFIGS[0])
    images = [ODD_IMAGES[name] for name in ("1x1", "grayscale", "cmyk")]
    batch = ours.batch(np.stack([ours.pixels(image) for image in images]))
    for row, image in zip(batch, images, strict=True):
        np.testing.assert_array_equal(row, ours(image))


@pytest.mark.parametrize(
    ("change", "words"),
    [({"interpolation": "random"}, "interpolation 'random'"), ({"crop_mode": "zoom"}, "crop_mode 'zoom'")],
)
def test_a_config_it_cannot_reproduce_is_a_config_error(change: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        EvalTransform({**CONFIGS[0], **change})


def test_every_supported_pair_of_filter_and_crop_mode_is_exact_on_a_small_image() -> None:
    image = random_image("RGB", (37, 29), seed=3)
    for interpolation, crop_mode in itertools.product(
        ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos"), ("center", "squash", "border")
    ):
        config = {"input_size": (3, 24, 24), "interpolation": interpolation, "crop_pct": 0.8, "crop_mode": crop_mode}
        assert_same_as_timm({**config, **IMAGENET}, image)
