"""The decode-once uint8 cache: same eval tensors as the JPEG path, no decoding in training, invalidation."""

from __future__ import annotations

import json
import os
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
from torchvision.datasets import ImageFolder
from torchvision.transforms.v2 import functional as F

from image_classifier.data.cache import CachedImages, build_entry, cache_dir_for, train_resize
from image_classifier.data.layout import Sample, write_prepared_dataset
from image_classifier.data.loaders import open_dataset, split_loader
from image_classifier.data.tensor_augment import crop_boxes, stored_size
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
    assert first and all(p.startswith("train-train-83x83-") for p in first)
    stamp = (cache_dir / first[0] / "images.npy").stat().st_mtime_ns

    _loader(photos_cfg, "train", training=True)
    assert (cache_dir / first[0] / "images.npy").stat().st_mtime_ns == stamp

    _write(tmp_path / "data", seed=1)
    _loader(photos_cfg, "train", training=True)
    rebuilt = sorted(p.name for p in cache_dir.iterdir())
    assert len(rebuilt) == 1 and rebuilt != first

    photos_cfg.data.image_size = 24
    _loader(photos_cfg, "train", training=True)
    assert any(p.name.startswith("train-train-62x62-") for p in cache_dir.iterdir())


def test_an_entry_another_builder_finished_first_is_kept(tmp_path: Path) -> None:
    """Two builders of one entry (torchrun ranks): the first to finish wins, the other reads its entry."""
    _write(tmp_path / "data")
    samples = ImageFolder(str(tmp_path / "data" / "processed" / "cifar10" / "train")).samples
    cache_dir, resize = tmp_path / "cache", train_resize(16, "bilinear")

    def resize_while_another_builder_finishes(image: Image.Image) -> Image.Image:
        if not (cache_dir / "entry").exists():
            build_entry(cache_dir, "entry", samples, resize, (16, 16), {"builder": "other"}, threads=1)
        return resize(image)

    entry = build_entry(
        cache_dir, "entry", samples, resize_while_another_builder_finishes, (16, 16), {"builder": "this"}, threads=1
    )
    assert json.loads((entry.path / "meta.json").read_text())["builder"] == "other"
    assert os.listdir(cache_dir) == ["entry"], "the second builder's staging folder is removed"
    assert entry.read([0, len(samples) - 1]).shape == (2, 3, 16, 16)


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
    """Whole-photo crops and certain flips: a training batch is the flipped, resized cached photo, normalised.

    Any aspect ratio is allowed, so each crop is the whole photo (torchvision's fallback) at its own aspect.
    """
    augment = photos_cfg.data.augment
    augment.scale, augment.ratio, augment.hflip, augment.vflip = [1, 1], [0.01, 100], 1.0, 0.0
    augment.color_jitter = None
    loader = _loader(photos_cfg, "train", training=True)
    dataset = loader.dataset
    assert isinstance(dataset, CachedImages) and not dataset.on_device
    stored = dataset.entry.read([0])
    height, width = (int(n) for n in stored_size(*dataset.sizes[0], side=stored.shape[-1]))  # type: ignore[index]
    photo = stored[..., :height, :width]  # the photo's place on its canvas
    expected = F.resize(photo, [32, 32], antialias=True).flip(-1).float().div(255)
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


def test_training_cache_stores_whole_photos_with_their_real_sizes(photos_cfg: DictConfig) -> None:
    """Twice the pixels the smallest crop needs (2 x 32 px / sqrt(0.6) -> 83), or the largest photo's side (120)."""
    dataset = _loader(photos_cfg, "train", training=True).dataset
    assert isinstance(dataset, CachedImages)
    expected = []
    for path, _ in dataset.samples:
        with Image.open(path) as image:
            expected.append((image.height, image.width))
    assert dataset.entry.sizes().tolist() == [list(size) for size in expected]
    assert dataset.entry.read([0]).shape == (1, 3, 83, 83)
    assert len({tuple(size) for size in expected}) > 1  # photos of many shapes, one stored square each

    photos_cfg.data.cache_max_side = 36
    capped = _loader(photos_cfg, "train", training=True).dataset
    assert isinstance(capped, CachedImages) and capped.entry.read([0]).shape == (1, 3, 36, 36)


def test_cached_training_crops_match_crops_of_the_jpeg(compose_config: ComposeFn, tmp_path: Path) -> None:
    """The cache path's random resized crops are the JPEG path's crops: small ones as sharp, sides included.

    Each crop is drawn in the photo's real 192 x 256 geometry; cut from the cached pixels it must match the same
    crop cut from the decoded JPEG with PIL (as timm's transform does) to within a few grey levels.
    """
    rng = np.random.default_rng(0)
    detail = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    photo = Image.fromarray(detail).resize((256, 192), Image.Resampling.BICUBIC)  # fine detail, not square
    samples = [Sample("train", label, photo) for label in CLASSES] + [Sample("val", "a", photo)]
    write_prepared_dataset(tmp_path / "data" / "processed" / "cifar10", CLASSES, samples, source={})
    cfg = compose_config(overrides=["data=cifar10", f"data.root={tmp_path / 'data'}", "data.image_size=64"])
    cfg.data.augment.hflip, cfg.data.augment.scale = 0.0, [0.08, 1.0]
    dataset = _loader(cfg, "train", training=True).dataset
    assert isinstance(dataset, CachedImages)
    crop = dataset.transform.crop  # type: ignore[attr-defined]
    stored = dataset.entry.read([0]).repeat(64, 1, 1, 1)
    torch.manual_seed(3)
    boxes = crop_boxes(64, 192, 256, crop.scale, crop.ratio, torch.device("cpu")).int().tolist()
    torch.manual_seed(3)
    cropped = crop(stored, np.array([[192, 256]] * 64))
    with Image.open(dataset.samples[0][0]) as jpeg:
        decoded = jpeg.convert("RGB")
    errors = []
    for out, (x0, y0, w, h) in zip(cropped, boxes, strict=True):
        reference = decoded.crop((x0, y0, x0 + w, y0 + h)).resize((64, 64), Image.Resampling.BILINEAR)
        errors.append(np.abs(out.permute(1, 2, 0).numpy().astype(float) - np.asarray(reference, dtype=float)).mean())
    assert np.mean(errors) < 5 and max(errors) < 12, errors
