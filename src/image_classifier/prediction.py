"""The evaluation loop: a model's logits over a DataLoader, in a run's precision (training validates with it,
evaluation and the linear probe predict with it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from image_classifier.distributed import gather_predictions, is_main
from image_classifier.precision import AUTOCAST_DTYPES

PRECISIONS: dict[str, torch.dtype | None] = {
    name: None if dtype is None else getattr(torch, dtype) for name, dtype in AUTOCAST_DTYPES.items()
}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast`` for a mixed precision, a no-op for ``32``."""
    dtype = PRECISIONS[str(precision)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def device_batches(
    loader: DataLoader, device: torch.device, channels_last: bool
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's ``(images, targets)`` batches on ``device``, the images in channels-last order if asked."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    for images, targets in loader:
        yield (
            images.to(device, non_blocking=True, memory_format=memory_format),
            targets.to(device, non_blocking=True),
        )


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device,
    precision: str,
    channels_last: bool = False,
    desc: str = "predict",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, on the CPU) and targets for every sample of ``loader``, in order."""
    model.eval()
    all_logits, all_targets = [], []
    batches = device_batches(loader, device, channels_last)
    for images, targets in tqdm(batches, total=len(loader), desc=desc, leave=False, disable=not is_main()):
        with autocast(device, precision):
            logits = model(images)
        all_logits.append(logits.float().cpu())
        all_targets.append(targets.cpu())
    return gather_predictions(torch.cat(all_logits), torch.cat(all_targets), loader)
