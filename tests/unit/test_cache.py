"""The decode-once uint8 cache: same eval tensors as the JPEG path, no decoding in training, invalidation."""

from __future__ import annotations

import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as F

from image_classifier.data.cache import CachedImages, cache_dir_for
from image_classifier.data.layout import Sample, write_prepared_dataset
from image_classifier.data.loaders import open_dataset, split_loader
from image_classifier.errors import ConfigError, DataError
from image_classifier.model import create_model, model_data_config
from tests.conftest import TINY_DATA_OVERRIDES, ComposeFn

CLASSES = ["a", "b", "c"]


def _photo(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    pixels = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels).resize((size[0] * 2, size[1] * 2), Image.Resampling.BILINEAR)


def _write(root: Path, seed: int = 0) -> None:
    """A prepared dataset of JPEGs with varied sizes and aspect ratios."""
    rng = random.Random(seed)
    samples = [
        Sample(split, label, _photo(rng, (rng.randint(20, 60), rng.randint(20, 60))))
        for split, count in (("train", 6), ("val", 3), ("test", 2))
        for label in CLASSES
        for _ in range(count)
    ]
    write_prepared_dataset(root / "processed" / "cifar10", CLASSES, samples, source={"test": seed})


@pytest.fixture
def photos_cfg(compose_config: ComposeFn, tmp_path: Path) -> DictConfig:
    _write(tmp_path / "data")
    return compose_config(
        overrides=["data=cifar10", f"data.root={tmp_path / 'data'}", "data.batch_size=4", "data.num_workers=0"]
    )


def _loader(cfg: DictConfig, split: str, training: bool = False, cache: bool = True) -> DataLoader:
    cfg.data.cache = cache
    dataset = open_dataset(cfg.data)
    model = create_model("baseline_cnn", num_classes=len(dataset.classes), width=8)
    data_config = model_data_config(model, cfg.data.image_size, cfg.data.get("crop_pct"))
    return split_loader(cfg.data, dataset, split, data_config, seed=0, training=training)


def test_eval_batches_from_the_cache_equal_the_jpeg_eval_transform(photos_cfg: DictConfig) -> None:
    for split in ("val", "test"):
        cached, jpeg = _loader(photos_cfg, split), _loader(photos_cfg, split, cache=False)
        assert isinstance(cached.dataset, CachedImages)
        assert cached.dataset.samples == jpeg.dataset.samples
        for (a, ta), (b, tb) in zip(cached, jpeg, strict=True):
            assert torch.equal(a, b) and torch.equal(ta, tb)


def test_cache_rows_are_read_in_any_order_and_a_truncated_file_is_reported(photos_cfg: DictConfig) -> None:
    entry = _loader(photos_cfg, "val").dataset.entry  # type: ignore[attr-defined]
    pixels = np.load(entry.images_path)
    for indices in ([0], [2, 3, 4], [5, 1, 2, 7], list(range(len(pixels)))[::-1]):
        assert np.array_equal(entry.read(indices).numpy(), pixels[indices])
    with open(entry.images_path, "r+b") as handle:
        handle.truncate(entry.images_path.stat().st_size - 1)
    with pytest.raises(DataError, match=r"truncated; delete .* to rebuild it"):
        type(entry)(entry.path).read([len(pixels) - 1])


def test_training_reads_the_cache_not_the_jpegs(photos_cfg: DictConfig) -> None:
    loader = _loader(photos_cfg, "train", training=True)
    for path, _ in loader.dataset.samples:  # type: ignore[attr-defined]
        Path(path).write_bytes(b"not a jpeg any more")
    seen = 0
    for _ in range(2):
        for images, targets in loader:
            assert images.dtype == torch.float32 and images.shape[1:] == (3, 32, 32)
            assert targets.dtype == torch.int64
            seen += len(targets)
    assert seen == 2 * (len(loader.dataset) // 4) * 4
    assert -3 < float(images.mean()) < 3


def test_cache_is_reused_then_rebuilt_when_the_source_or_size_changes(photos_cfg: DictConfig, tmp_path: Path) -> None:
    _loader(photos_cfg, "train", training=True)
    cache_dir = cache_dir_for(photos_cfg.data)
    first = sorted(p.name for p in cache_dir.iterdir())
    assert first and all(p.startswith("train-train-37x37-") for p in first)
    stamp = (cache_dir / first[0] / "images.npy").stat().st_mtime_ns

    _loader(photos_cfg, "train", training=True)
    assert (cache_dir / first[0] / "images.npy").stat().st_mtime_ns == stamp

    _write(tmp_path / "data", seed=1)
    _loader(photos_cfg, "train", training=True)
    rebuilt = sorted(p.name for p in cache_dir.iterdir())
    assert len(rebuilt) == 1 and rebuilt != first

    photos_cfg.data.image_size = 24
    _loader(photos_cfg, "train", training=True)
    assert any(p.name.startswith("train-train-28x28-") for p in cache_dir.iterdir())


def test_cache_can_be_switched_off(compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_data_root / "processed", root / "processed")
    cfg = compose_config(overrides=[*TINY_DATA_OVERRIDES, f"data.root={root}", "data.cache=false"])
    loader = _loader(cfg, "train", training=True, cache=False)
    assert not isinstance(loader.dataset, CachedImages)
    assert not cache_dir_for(cfg.data).exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal")
def test_augment_device_errors_are_one_line(photos_cfg: DictConfig) -> None:
    for value, message in (("cuda", "CUDA is not available"), ("tpu", "not one of auto, cuda, workers")):
        photos_cfg.data.augment_device = value
        with pytest.raises(ConfigError, match=message):
            _loader(photos_cfg, "train", training=True)


def test_training_batches_follow_the_augment_config(photos_cfg: DictConfig) -> None:
    """No crop jitter and certain flips: a training batch is the flipped, resized cached image, normalised.

    The resize is plain bilinear: a cached image is at most ``cache_scale`` times the output size.
    """
    augment = photos_cfg.data.augment
    augment.scale, augment.ratio, augment.hflip, augment.vflip, augment.color_jitter = [1, 1], [1, 1], 1.0, 0.0, None
    loader = _loader(photos_cfg, "train", training=True)
    dataset = loader.dataset
    assert isinstance(dataset, CachedImages) and not dataset.on_device
    cached = dataset.entry.read([0])
    expected = F.resize(cached.float(), [32, 32], antialias=False).flip(-1).div(255)
    expected = F.normalize(expected, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    images, targets = dataset.__getitems__([0, 1])
    assert targets.tolist() == dataset.targets[:2] and images.shape == (2, 3, 32, 32)
    assert torch.allclose(images[0], expected[0], atol=1e-5)
    image, target = dataset[0]
    assert target == dataset.targets[0] and torch.allclose(image, expected[0], atol=1e-5)


def test_auto_augment_and_erasing_run_on_tensors_and_pickle(photos_cfg: DictConfig) -> None:
    """timm's RandAugment and random erasing on cached batches; the dataset survives spawn-style pickling."""
    photos_cfg.data.augment.auto_augment = "rand-m9-mstd0.5-inc1"
    photos_cfg.data.augment.re_prob = 1.0
    dataset = _loader(photos_cfg, "train", training=True).dataset
    clone = pickle.loads(pickle.dumps(dataset))
    images, _ = clone.__getitems__([0, 1, 2])
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32 and torch.isfinite(images).all()
    assert images.is_contiguous()  # NCHW, as the model expects: no layout change inside the training step
