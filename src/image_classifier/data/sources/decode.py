"""Check, convert and hash many photos in parallel, one process per core, with a progress bar.

Each worker decodes a photo fully (:func:`~image_classifier.data.sources.images.check_image`), writes the
file to keep into the output folder itself and sends back only a small :class:`Decoded` record (sizes,
md5, perceptual hash), so memory stays flat however many photos there are.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import imagehash
import numpy as np
from PIL import Image
from tqdm import tqdm

from image_classifier.data.layout import encode_jpeg
from image_classifier.data.sources.base import PrepareSettings
from image_classifier.data.sources.images import Rejected, check_image

JPEG_QUALITY = 95
T = TypeVar("T")
R = TypeVar("R")
CHUNK = 16
SHARDS = 64
"""Subfolders the decoded photos are spread over: files created in one folder wait on each other."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """A usable photo, written to ``<index><suffix>`` in the output folder."""

    index: int
    suffix: str
    width: int
    height: int
    source_width: int
    source_height: int
    md5: bytes
    """The kept file's MD5 digest."""
    phash: int
    """64-bit DCT perceptual hash (imagehash.phash)."""
    dhash: int
    """64-bit gradient hash (imagehash.dhash): confirms a pHash match."""
    conversions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Skipped:
    index: int
    reason: str


def decoded_name(index: int, suffix: str) -> str:
    """Where photo ``index`` is written in the output folder (one of :data:`SHARDS` subfolders, made by the caller)."""
    return f"{index % SHARDS}/{index}{suffix}"


def decode_one(task: tuple[int, str], out: str, settings: PrepareSettings) -> Decoded | Skipped:
    """Check photo ``task = (index, path)``; write what is kept to ``out/``:func:`decoded_name` and describe it."""
    index, path = task
    result = check_image(Path(path), settings)
    if isinstance(result, Rejected):
        return Skipped(index, result.reason)
    payload = result.data if result.data is not None else encode_jpeg(result.image, JPEG_QUALITY)
    suffix = result.suffix.lower()
    Path(out, decoded_name(index, suffix)).write_bytes(payload)
    return Decoded(
        index,
        suffix,
        *result.image.size,
        *result.source_size,
        hashlib.md5(payload).digest(),
        *perceptual_hashes(result.image),
        tuple(result.conversions),
    )


def perceptual_hashes(image: Image.Image) -> tuple[int, int]:
    """The photo's pHash and dHash (64-bit): equal or close for resized, re-encoded or slightly cropped copies."""
    return hash_bits(imagehash.phash(image)), hash_bits(imagehash.dhash(image))


def hash_bits(value: imagehash.ImageHash) -> int:
    """An image hash as an integer, its first bit the highest (the number its hex string spells)."""
    return int.from_bytes(np.packbits(value.hash.flatten()).tobytes(), "big")


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the main process, which stops them and removes what they wrote."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def parallel_map(
    func: Callable[[T], R], tasks: Iterable[T], total: int, workers: int = 0, desc: str = ""
) -> Iterator[R]:
    """``func`` over ``tasks`` on ``workers`` processes (0: every core), results as they finish, with a progress bar.

    Ctrl-C stops the workers (the pool is terminated) and reaches the caller as ``KeyboardInterrupt``.
    """
    workers = workers or default_workers()
    perceptual_hashes(Image.new("RGB", (8, 8)))  # imports scipy's FFT here once, not in every worker
    bar = tqdm(total=total, desc=desc, unit="photo", disable=None, smoothing=0.1)
    try:
        if workers == 1 or total < 2 * CHUNK:
            for task in tasks:
                yield func(task)
                bar.update()
            return
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        gc.freeze()  # forked workers then share this process's objects instead of copying them as they collect
        with context.Pool(workers, initializer=_ignore_interrupts) as pool:
            for result in pool.imap_unordered(func, tasks, chunksize=CHUNK):
                yield result
                bar.update()
    finally:
        gc.unfreeze()
        bar.close()


def decode_all(
    paths: Iterable[str], total: int, out: Path, settings: PrepareSettings, workers: int = 0, desc: str = "import"
) -> Iterator[Decoded | Skipped]:
    """Decode the ``total`` photos at ``paths`` into ``out`` (see :func:`decode_one`), in the order they finish."""
    for shard in range(SHARDS):
        (out / str(shard)).mkdir(exist_ok=True)
    decode = functools.partial(decode_one, out=str(out), settings=settings)  # sent once a chunk, not once a photo
    return parallel_map(decode, enumerate(paths), total, workers, desc)


def hash_one(task: tuple[int, str]) -> tuple[int, tuple[int, int]]:
    index, path = task
    with Image.open(path) as image:
        return index, perceptual_hashes(image.convert("RGB"))


def hash_all(paths: Sequence[Path], workers: int = 0, desc: str = "hash") -> list[tuple[int, int]]:
    """The pHash and dHash of each of ``paths``, in order."""
    hashes = [(0, 0)] * len(paths)
    tasks = ((index, str(path)) for index, path in enumerate(paths))
    for index, value in parallel_map(hash_one, tasks, len(paths), workers, desc):
        hashes[index] = value
    return hashes
