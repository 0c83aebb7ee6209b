"""Decode once: a split's images resized into a uint8 ``.npy`` file, read back memory-mapped.

A cache entry is a folder ``CACHE_DIR/<split>-<kind>-<H>x<W>-<key>/`` with ``images.npy``
(N x 3 x H x W uint8, in ``ImageFolder`` order), ``sizes.npy`` (each image's real height and
width, N x 2) and ``meta.json``. The key
hashes the prepared dataset's manifest fingerprint, the split, the size and how images were
resized, so a changed source or size never reads a stale entry: a new one is built (and the
stale one for the same split, kind and size removed). Entries are built in a temporary folder
and renamed into place, so concurrent builders (torchrun ranks) never see half an entry; the first
to finish wins.

Two kinds:

- ``train``: the whole photo at the top left of an S x S canvas (see :func:`train_side`), in its own
  geometry: shrunk to fit (never enlarged, never squashed) when a side is longer than S, its real size
  kept in ``sizes.npy``. Batches are augmented on tensors (:mod:`image_classifier.data.tensor_augment`)
  with crops drawn in each photo's real geometry, sides included. A photo that fits is cropped from
  its decoded pixels themselves, so the crop is the one timm's transform cuts from the JPEG.
- ``eval``: exactly the evaluation transform's resize and crop, so normalising the cached
  pixels gives the same tensors, bit for bit, as ``preprocess.eval_transform`` on the JPEG.

``images.npy`` is a plain NumPy file (``np.load(path, mmap_mode="r")`` maps it). The loaders
read a batch's rows with positional reads into a fresh buffer, one read per run of consecutive
rows, so the process's resident memory holds one batch of pixels, not the dataset, and no
mapping is set up and torn down per batch (a quarter of the cost of reading through ``np.load``'s
memory map, page faults included).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import pil_loader

from image_classifier.atomic import atomic_path
from image_classifier.data.layout import PreparedDataset
from image_classifier.data.tensor_augment import TrainAugment, stored_size
from image_classifier.errors import ConfigError, DataError
from image_classifier.preprocess import ImageOp, Normalize, resized_pixels, split_eval_transform

log = logging.getLogger(__name__)

CACHE_FORMAT = 3
CHUNK = 256
DEFAULT_CACHE_MAX_SIDE = 320

BatchTransform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CacheEntry:
    """One built cache entry on disk."""

    path: Path

    @property
    def images_path(self) -> Path:
        return self.path / "images.npy"

    def sizes(self) -> np.ndarray:
        """Each image's real (height, width) before it was stored, N x 2."""
        return np.load(self.path / "sizes.npy")

    @cached_property
    def layout(self) -> tuple[int, tuple[int, ...]]:
        """Where the pixels start in ``images.npy`` (bytes) and the array's shape, from its header."""
        with open(self.images_path, "rb") as handle:
            np.lib.format.read_magic(handle)
            shape, _, _ = np.lib.format.read_array_header_1_0(handle)
            return handle.tell(), tuple(shape)

    def read(self, indices: Sequence[int]) -> torch.Tensor:
        """The rows ``indices`` as a uint8 N x 3 x H x W tensor, read from disk (one read per consecutive run)."""
        offset, shape = self.layout
        row_bytes = int(np.prod(shape[1:]))
        rows = np.empty((len(indices), *shape[1:]), dtype=np.uint8)
        flat = rows.reshape(len(indices), row_bytes)
        with open(self.images_path, "rb", buffering=0) as handle:
            for position, first, count in consecutive_runs(indices):
                handle.seek(offset + first * row_bytes)
                if handle.readinto(flat[position : position + count].data) != count * row_bytes:
                    raise DataError(f"{self.images_path} is truncated; delete {self.path} to rebuild it.")
        return torch.from_numpy(rows)


def consecutive_runs(indices: Sequence[int]) -> Iterator[tuple[int, int, int]]:
    """``(position in indices, first index, length)`` for each run of consecutive indices."""
    start = 0
    for position in range(1, len(indices) + 1):
        if position == len(indices) or indices[position] != indices[position - 1] + 1:
            yield start, int(indices[start]), position - start
            start = position


def cache_key(fingerprint: str, split: str, kind: str, size: tuple[int, int], resize: str) -> str:
    payload = json.dumps([CACHE_FORMAT, fingerprint, split, kind, list(size), resize])
    return hashlib.md5(payload.encode()).hexdigest()[:12]


def build_entry(
    cache_dir: Path,
    name: str,
    samples: Sequence[tuple[str, int]],
    resize: ImageOp,
    size: tuple[int, int],
    meta: dict[str, Any],
    threads: int | None = None,
) -> CacheEntry:
    """Decode and ``resize`` every sample once into ``cache_dir/name`` (kept if it is already there)."""
    final = cache_dir / name
    if (final / "meta.json").is_file():
        return CacheEntry(final)
    shape = (len(samples), 3, *size)
    log.info("Caching %d images at %dx%d into %s", len(samples), size[0], size[1], final)
    with atomic_path(final, directory=True, overwrite=False) as staging:  # a concurrent builder may finish first
        with open(staging / "images.npy", "wb") as handle:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False, "shape": shape}
            np.lib.format.write_array_header_1_0(handle, header)
            with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
                sizes = []
                for start in range(0, len(samples), CHUNK):
                    chunk = [path for path, _ in samples[start : start + CHUNK]]
                    for image, pixels in pool.map(lambda p: _decode_resized(p, resize), chunk):
                        if pixels.shape != shape[1:]:
                            raise DataError(f"Cached image has shape {pixels.shape}, expected {shape[1:]}.")
                        handle.write(np.ascontiguousarray(pixels).tobytes())
                        sizes.append((image.height, image.width))
        np.save(staging / "sizes.npy", np.asarray(sizes, dtype=np.int32).reshape(len(samples), 2))
        (staging / "meta.json").write_text(json.dumps({**meta, "count": len(samples), "size": list(size)}, indent=2))
    if not (final / "meta.json").is_file():
        raise DataError(f"{final} is not a complete cache entry; delete it to rebuild it.")
    return CacheEntry(final)


def remove_stale(cache_dir: Path, prefix: str, keep: str) -> None:
    """Delete the other entries of the same split, kind and size (built from another source)."""
    for entry in cache_dir.glob(f"{prefix}-*"):
        if entry.name != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _decode_resized(path: str, resize: ImageOp) -> tuple[Image.Image, np.ndarray]:
    image = pil_loader(path)
    return image, resized_pixels(image, resize)


class FitInSquare:
    """The whole photo on a black ``side`` x ``side`` canvas, top left, shrunk to fit (aspect ratio kept) if it
    is larger: the training cache's images. Never enlarged, so a photo that fits keeps its decoded pixels."""

    def __init__(self, side: int, interpolation: str) -> None:
        self.side = side
        self.interpolation = interpolation
        self.resize_mode = transforms.InterpolationMode(interpolation)

    def __call__(self, image: Image.Image) -> Image.Image:
        height, width = (int(n) for n in stored_size(np.asarray(image.height), np.asarray(image.width), self.side))
        if (height, width) != (image.height, image.width):
            image = transforms.functional.resize(image, [height, width], interpolation=self.resize_mode)
        canvas = Image.new("RGB", (self.side, self.side))
        canvas.paste(image, (0, 0))
        return canvas

    def __repr__(self) -> str:
        return f"FitInSquare(side={self.side}, interpolation={self.interpolation})"


def train_resize(side: int, interpolation: str) -> ImageOp:
    """The training cache's images: each photo on a ``side`` x ``side`` canvas (real sizes kept apart)."""
    return FitInSquare(side, interpolation)


def train_side(data_cfg: Any, largest: int) -> int:
    """The training cache's side S: the photos' own resolution, unless that is far more than any crop needs.

    The smallest random crop (``augment.scale[0]`` of the area) needs ``image_size / sqrt(scale[0])``
    pixels across to be cut at full detail; S allows twice that, since a shrunk photo's pixels are
    resampled again when cropped (at 1x, fine detail measurably blurs). S is also capped by
    ``data.cache_max_side`` (disk: N x 3 x S x S bytes) and by ``largest``, the largest photo's long side
    (more pixels than it has add nothing).
    """
    wanted = math.ceil(2 * int(data_cfg.image_size) / math.sqrt(float(data_cfg.augment.scale[0])))
    largest = largest or wanted
    cap = int(data_cfg.get("cache_max_side") or DEFAULT_CACHE_MAX_SIDE)
    return max(1, min(wanted, cap, largest))


def augment_device(data_cfg: Any) -> torch.device | None:
    """Where training batches are augmented (``data.augment_device``): a CUDA device, or None for the CPU workers.

    ``auto`` picks the current CUDA device when there is one, unless an auto-augment policy is set (timm runs
    those on PIL images, so they stay in the CPU workers).
    """
    choice = str(data_cfg.get("augment_device") or "auto")
    if choice not in ("auto", "cuda", "workers"):
        raise ConfigError(f"data.augment_device={choice} is not one of auto, cuda, workers.")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("data.augment_device=cuda but CUDA is not available; use auto or workers.")
    if choice == "workers" or not torch.cuda.is_available():
        return None
    if choice == "auto" and data_cfg.augment.get("auto_augment"):
        return None
    return torch.device("cuda", torch.cuda.current_device())


class CachedImages(Dataset):
    """A split read from its uint8 cache, yielding ``(image_tensor, target)`` like ``ImageFolder`` + transform.

    The DataLoader asks ``__getitems__`` for a whole batch, which reads and transforms it at once
    and returns it already stacked; ``collate`` (the loader's ``collate_fn``) passes it through.
    """

    def __init__(
        self, entry: CacheEntry, folder: ImageFolder, transform: BatchTransform, on_device: bool = False
    ) -> None:
        self.entry = entry
        self.transform = transform
        self.sizes = entry.sizes() if isinstance(transform, TrainAugment) else None
        """Real image sizes, for the training augmentation's crops."""
        self.on_device = on_device
        """Batches come out on the GPU (so they must not be pinned)."""
        self.in_process = on_device or isinstance(transform, Normalize)
        """Load in the main process, without workers: GPU batches, and eval batches (a copy and a normalise)."""
        self.classes = folder.classes
        self.class_to_idx = folder.class_to_idx
        self.samples = folder.samples
        self.targets = [target for _, target in folder.samples]
        self.root = folder.root

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images, _ = self.__getitems__([index])
        return images[0], self.targets[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch ``indices``: images N x 3 x H x W (transformed) and int64 targets."""
        targets = torch.tensor([self.targets[i] for i in indices], dtype=torch.int64)
        images = self.entry.read(indices)
        if self.sizes is not None:
            return self.transform(images, self.sizes[list(indices)]), targets  # type: ignore[call-arg]
        return self.transform(images), targets

    @staticmethod
    def collate(batch: Any) -> Any:
        """The DataLoader's ``collate_fn``: ``__getitems__`` already made the batch."""
        return batch


def cache_dir_for(data_cfg: Any) -> Path:
    """``data.cache_dir``, or ``DATA_ROOT/cache/<dataset>``."""
    configured = data_cfg.get("cache_dir")
    return Path(configured) if configured else Path(data_cfg.root) / "cache" / data_cfg.name


def cached_split(
    data_cfg: Any, dataset: PreparedDataset, split: str, data_config: dict[str, Any], eval_ops: Any, training: bool
) -> CachedImages | None:
    """The split as a :class:`CachedImages` (building its cache on first use), or None if it cannot be cached.

    Training reads ``train``-kind entries and augments on tensors; evaluation reads ``eval``-kind
    entries only when ``eval_ops`` (the eval transform) splits into resize/crop and normalise.
    """
    folder = ImageFolder(str(dataset.split_dir(split)))
    interpolation = str(data_config.get("interpolation", "bilinear"))
    if training:
        side = train_side(data_cfg, dataset.largest_side(split))
        resize: ImageOp = train_resize(side, interpolation)
        size, kind, how = (side, side), "train", repr(resize)
        device = augment_device(data_cfg)
        transform: BatchTransform = TrainAugment(data_cfg.augment, data_config, device)
    else:
        device = None
        parts = split_eval_transform(eval_ops)
        if parts is None:
            return None
        resize, transform = parts
        size, kind, how = tuple(data_config["input_size"][-2:]), "eval", repr(resize)
    key = cache_key(dataset.fingerprint, split, kind, size, how)
    prefix = f"{split}-{kind}-{size[0]}x{size[1]}"
    cache_dir = cache_dir_for(data_cfg)
    meta = {"fingerprint": dataset.fingerprint, "split": split, "kind": kind, "resize": how}
    entry = build_entry(cache_dir, f"{prefix}-{key}", folder.samples, resize, size, meta)
    remove_stale(cache_dir, prefix, entry.path.name)
    return CachedImages(entry, folder, transform, on_device=device is not None)
