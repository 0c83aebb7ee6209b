"""The loaders' samplers: a resumable, per-epoch training order (this rank's shard under torchrun), and evaluation
split over the ranks in dataset order."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any, cast

from torch.utils.data import DataLoader, DistributedSampler, Sampler

from image_classifier.distributed import Topology, is_initialized, topology


class ResumableSampler(Sampler[int]):
    """The training order: each rank's shard of a permutation drawn from ``seed`` and the epoch alone, so a resumed
    run draws it again; after :meth:`start_at` the next pass begins part-way through it.

    The next pass skips the first ``start`` indices of the epoch's shard (the skipped samples are never loaded);
    later passes are whole. ``len()`` counts what the next pass yields.
    """

    def __init__(self, dataset: Any, seed: int, world_size: int = 1, rank: int = 0) -> None:
        self.shard: DistributedSampler[Any] = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.start = 0

    def start_at(self, start: int) -> None:
        self.start = start

    def set_epoch(self, epoch: int) -> None:
        self.shard.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return itertools.islice(iter(self.shard), start, None)

    def __len__(self) -> int:
        return max(0, len(self.shard) - self.start)


def sampler_for(dataset: Any, training: bool, seed: int) -> Sampler[int] | None:
    """The sampler of a split's loader.

    Training: a :class:`ResumableSampler`, reshuffled every epoch (:func:`set_epoch`), this rank's shard under
    torchrun. Evaluation: a non-shuffling DistributedSampler under torchrun, else None (in order).
    """
    here = topology() if is_initialized() else Topology()
    if training:
        return ResumableSampler(dataset, seed, here.world_size, here.rank)
    if here.world_size == 1:
        return None
    return DistributedSampler(dataset, num_replicas=here.world_size, rank=here.rank, shuffle=False)


def set_epoch(loaders: Mapping[str, DataLoader], epoch: int) -> None:
    """Reshuffle every training sampler (and DistributedSampler) for ``epoch``: each epoch has its own order."""
    for loader in loaders.values():
        if isinstance(loader.sampler, (DistributedSampler, ResumableSampler)):
            loader.sampler.set_epoch(epoch)


def start_at_batch(loader: DataLoader, batch: int) -> None:
    """Make the next pass over the training ``loader`` begin with its ``batch``-th batch (0: the first)."""
    if batch == 0:
        return
    if not isinstance(loader.sampler, ResumableSampler):
        raise TypeError("Only a loader with a ResumableSampler can start inside an epoch.")
    loader.sampler.start_at(batch * cast(int, loader.batch_size))
