"""Data-parallel training under ``torchrun``: process group, rank helpers, the model's wrapper, reductions, gathering.

Every helper is a no-op in a plain single-process run, so the training code reads the same either way.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from image_classifier import process_group
from image_classifier.errors import ConfigError, UserError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_SETUP_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Topology:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """True in a process started by ``torchrun`` (or any launcher that sets ``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def topology() -> Topology:
    """This process's ranks, from the initialised process group, else from the launcher's environment."""
    env = os.environ
    local = Topology(
        rank=int(env.get("RANK", 0)),
        local_rank=int(env.get("LOCAL_RANK", 0)),
        world_size=int(env.get("WORLD_SIZE", 1)),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", 1)),
    )
    if not is_initialized():
        return local
    return Topology(dist.get_rank(), local.local_rank, dist.get_world_size(), local.local_world_size)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    """Rank 0 of the job (the only one that logs, checkpoints and tracks)."""
    return topology().is_main


def init_distributed(
    timeout_s: float = DEFAULT_TIMEOUT_S, setup_timeout_s: float = DEFAULT_SETUP_TIMEOUT_S
) -> Topology:
    """Join the job's process group once (gloo on CPU, NCCL for CUDA tensors) and quiet every rank's log but 0's.

    A no-op outside torchrun.

    ``setup_timeout_s`` bounds joining the group (:mod:`image_classifier.process_group`), ``timeout_s`` every
    collective after it, so a rank that never comes or stops answering fails the job instead of hanging it.
    """
    if launched() and not is_initialized():
        if not dist.is_available():
            raise ConfigError("This PyTorch build has no torch.distributed; run without torchrun.")
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        process_group.join(backend, setup_timeout_s, timeout_s)
        atexit.register(teardown)
        log.info("Joined a %d-process group (%s) as rank %d", dist.get_world_size(), backend, dist.get_rank())
    here = topology()
    if not here.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    return here


class LostPeerError(UserError):
    """Another process of the job died or stopped answering; one ``error:`` line (torchrun may then restart)."""


_TIMED_OUT = ("timed out", "timeout")
_CONNECTION_LOST = ("connection reset", "connection closed", "connection refused", "broken pipe", "pair closure")


def lost_peer_reason(error: BaseException, timeout_s: float) -> str | None:
    """One line on why a collective failed when ``error`` is a dead or silent peer; None for any other error."""
    if not is_initialized() or not isinstance(error, RuntimeError):
        return None
    message = str(error).strip()
    lowered = message.lower()
    detail = message.splitlines()[0].rpartition("] ")[2].split(". ")[0] if message else type(error).__name__
    rank = dist.get_rank()
    if any(marker in lowered for marker in _TIMED_OUT):
        return (
            f"rank {rank}: no answer from the other processes within trainer.dist_timeout_s={timeout_s:g} s "
            f"(a host went away or hangs): {detail}"
        )
    if isinstance(error, dist.DistError) or any(marker in lowered for marker in _CONNECTION_LOST):
        return f"rank {rank}: lost its connection to another process (it died, or its host went away): {detail}"
    return None


@contextlib.contextmanager
def lost_peers_in_one_line(timeout_s: float) -> Iterator[None]:
    """Turn a collective's failure on a dead or silent peer into a one-line :class:`LostPeerError`."""
    try:
        yield
    except RuntimeError as error:
        reason = lost_peer_reason(error, timeout_s)
        if reason is None:
            raise
        raise LostPeerError(reason) from None


def teardown() -> None:
    """Leave the process group (safe to call twice)."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def rank_device(device: torch.device) -> torch.device:
    """The CUDA device of this process's local rank; other devices unchanged."""
    if device.type == "cuda" and launched():
        return torch.device("cuda", topology().local_rank)
    return device


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """Run the block on each node's local rank 0 first (e.g. to generate or cache data), then on the others."""
    first = topology().local_rank == 0
    if not first:
        barrier()
    yield
    if first:
        barrier()


def broadcast_object(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def per_rank_batch_size(global_batch_size: int) -> int:
    """``data.batch_size`` is the global batch: split it evenly over the ranks."""
    world = topology().world_size
    if global_batch_size % world:
        raise ConfigError(
            f"data.batch_size={global_batch_size} (the global batch) does not split evenly over {world} processes; "
            f"use a multiple of {world}."
        )
    return global_batch_size // world


def wrap_model(
    model: nn.Module, device: torch.device, sync_batchnorm: bool = False, find_unused_parameters: bool = False
) -> nn.Module:
    """The module to train: ``model`` itself, or (under torchrun) ``model`` in DistributedDataParallel.

    ``sync_batchnorm`` converts BatchNorm layers to SyncBatchNorm in place (batch statistics over the global batch,
    CUDA only), so ``model`` keeps sharing its parameters with the wrapper. ``find_unused_parameters`` is for
    runs that freeze parameters after wrapping (head-only warm-up): DDP would otherwise wait for their gradients.
    """
    if not is_initialized():
        return model
    if sync_batchnorm:
        if device.type != "cuda":
            raise ConfigError("trainer.sync_batchnorm needs CUDA devices; turn it off for CPU runs.")
        if nn.SyncBatchNorm.convert_sync_batchnorm(model) is not model:
            raise ConfigError("trainer.sync_batchnorm cannot convert a model that is a single BatchNorm layer.")
    device_ids = (
        [device.index if device.index is not None else topology().local_rank] if device.type == "cuda" else None
    )
    return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=find_unused_parameters)


def mean_over_ranks(metrics: Mapping[str, float]) -> dict[str, float]:
    """The mean of each metric over the ranks (exact for per-sample means: every rank sees as many samples)."""
    if not is_initialized() or not metrics:
        return dict(metrics)
    keys = sorted(metrics)
    values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    values /= dist.get_world_size()
    return dict(zip(keys, values.tolist(), strict=True))


def gather_predictions(
    logits: torch.Tensor, targets: torch.Tensor, loader: DataLoader
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's predictions, in dataset order, without DistributedSampler's padding duplicates.

    A non-shuffling DistributedSampler deals index ``i`` to rank ``i % world`` and pads the tail by repeating the
    first indices, so interleaving the ranks' equally long outputs and cutting at ``len(dataset)`` restores exactly
    what a single process would have predicted.
    """
    sampler = loader.sampler
    if not is_initialized() or not isinstance(sampler, DistributedSampler):
        return logits, targets
    if sampler.shuffle:
        raise ValueError("gather_predictions needs a non-shuffling DistributedSampler.")
    world = dist.get_world_size()
    gathered = []
    for tensor in (logits, targets):
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ordered = torch.stack(parts, dim=1).flatten(0, 1)
        gathered.append(ordered[: len(loader.dataset)])  # type: ignore[arg-type]
    return gathered[0], gathered[1]
