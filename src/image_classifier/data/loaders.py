"""Datasets and DataLoaders for a prepared dataset, with timm's transforms."""

from __future__ import annotations

import os
from collections.abc import Sized
from dataclasses import dataclass
from typing import Any, cast

import torch
from timm.data import create_transform
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from image_classifier.data.cache import CachedImages, cached_split
from image_classifier.data.layout import SPLITS, PreparedDataset, load_prepared_dataset, prepared_dir
from image_classifier.data.samplers import sampler_for
from image_classifier.data.sources import prepare_if_needed, source_named
from image_classifier.distributed import per_rank_batch_size, topology
from image_classifier.errors import DataError
from image_classifier.preprocess import eval_transform


@dataclass
class DataLoaders:
    """The prepared dataset and one loader per split that it has."""

    dataset: PreparedDataset
    loaders: dict[str, DataLoader]

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes


def open_dataset(data_cfg: Any) -> PreparedDataset:
    """The prepared dataset named by ``data_cfg``; a generated one is made on first use and when its settings change."""
    source = source_named(data_cfg.name, data_cfg.get("prepare"))
    if source.generated:
        prepare_if_needed(source, data_cfg.root, data_cfg.get(source.settings_key) or {})
    hint = f"invoke data {source.name} --root {data_cfg.root}"
    return load_prepared_dataset(prepared_dir(data_cfg.root, source.name), hint=hint)


def build_transforms(data_cfg: Any, data_config: dict[str, Any], training: bool) -> Any:
    """timm's train or eval transform for the model's input size, mean and std."""
    if not training:
        return eval_transform(data_config)
    augment = data_cfg.augment
    return create_transform(
        is_training=True,
        scale=tuple(augment.scale),
        ratio=tuple(augment.ratio),
        hflip=augment.hflip,
        vflip=augment.vflip,
        color_jitter=augment.color_jitter,
        auto_augment=augment.auto_augment,
        re_prob=augment.re_prob,
        re_mode=augment.get("re_mode") or "pixel",
        input_size=data_config["input_size"],
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=data_config["mean"],
        std=data_config["std"],
    )


def split_loader(
    data_cfg: Any,
    dataset: PreparedDataset,
    split: str,
    data_config: dict[str, Any],
    seed: int,
    training: bool = False,
    device: torch.device | None = None,
) -> DataLoader:
    """A DataLoader over one split; training shuffles with a seeded generator and augments.

    ``device`` is where the model runs; it sizes ``num_workers: auto`` (see :func:`resolve_num_workers`).
    """
    split_dir = dataset.split_dir(split)
    if not split_dir.is_dir():
        raise DataError(f"{dataset.root} has no '{split}' split.")
    if training:  # training crops at data.image_size; evaluation may run at data.eval_image_size
        data_config = {**data_config, "input_size": (3, int(data_cfg.image_size), int(data_cfg.image_size))}
    transform = build_transforms(data_cfg, data_config, training)
    cached = cached_split(data_cfg, dataset, split, data_config, transform, training) if data_cfg.get("cache") else None
    images = cached if cached is not None else ImageFolder(str(split_dir), transform=transform)
    if images.classes != dataset.classes:
        raise DataError(f"{split_dir} has classes {images.classes}, expected {dataset.classes}.")
    on_device = bool(getattr(images, "on_device", False))  # batches made on the GPU: no pinning
    workers = 0 if getattr(images, "in_process", False) else resolve_num_workers(data_cfg.num_workers, device)
    batch_size = per_rank_batch_size(int(data_cfg.batch_size))
    sampler = sampler_for(images, training, seed)  # training: an order per epoch, resumable inside it
    return DataLoader(
        images,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=training and len(cast(Sized, sampler if sampler is not None else images)) > batch_size,
        num_workers=workers,
        pin_memory=bool(data_cfg.pin_memory) and torch.cuda.is_available() and not on_device,
        persistent_workers=workers > 0,
        prefetch_factor=int(data_cfg.get("prefetch_factor") or 2) if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed + topology().rank),  # per-rank worker seeds
        collate_fn=CachedImages.collate if isinstance(images, CachedImages) else None,
    )


def resolve_num_workers(value: int | str, device: torch.device | None = None) -> int:
    """``data.num_workers``: a number, or ``auto`` for the CPUs this rank's compute leaves free (at most 8).

    Each rank gets its share of this machine's CPUs. A model on a GPU leaves all but one of them
    to the workers; a model on the CPU already runs ``torch.get_num_threads()`` threads on them,
    so workers only get what is left: on a machine whose every core trains, none, and batches
    are loaded between steps in the main process (a worker would slow every step down by more
    than it saves).
    """
    if str(value) != "auto":
        return int(value)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    share = cpus // topology().local_world_size
    busy = torch.get_num_threads() if device is not None and device.type == "cpu" else 1
    return max(0, min(8, share - busy))


def build_dataloaders(
    data_cfg: Any, dataset: PreparedDataset, data_config: dict[str, Any], seed: int, device: torch.device | None = None
) -> DataLoaders:
    """One DataLoader per split that ``dataset`` has; ``train`` and ``val`` are required."""
    loaders = {
        split: split_loader(data_cfg, dataset, split, data_config, seed, training=split == "train", device=device)
        for split in SPLITS
        if dataset.split_dir(split).is_dir() or split in ("train", "val")
    }
    return DataLoaders(dataset=dataset, loaders=loaders)
