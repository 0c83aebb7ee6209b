"""Offline ceilings of a served model: batched images/s on in-memory tensors, and through decode + preprocess."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from image_classifier.api.images import prepare
from image_classifier.api.predictors import load_predictor
from image_classifier.preprocess import BatchedEvalTransform


def _rate(step: Callable[[], int], duration: float) -> tuple[float, float]:
    """Items per wall second and per CPU second of repeated ``step()`` calls (each returns its item count)."""
    for _ in range(2):
        step()
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < duration:
        done += step()
    return done / (time.perf_counter() - start), done / (time.process_time() - cpu)


def offline_ceilings(
    model_path: Path, images: list[bytes], batch: int, duration: float, threads: int
) -> dict[str, float]:
    """Images per second (wall, and per CPU second: ``*_cpu``) of batched forward passes (``model``) and of
    decode + preprocess + forward (``pipeline``) at ``batch``; and of forward passes alone at batch 1 and
    ``batch // 2`` (``model_b1``, ``model_b8`` for a batch of 16), in half the time."""
    predictor = load_predictor(model_path, threads)
    preprocess = BatchedEvalTransform(predictor.data_config)

    def pixels(size: int) -> np.ndarray:
        chunk = (images * (size // len(images) + 1))[:size]
        return np.stack([prepare(data, "x", preprocess.pixels, 2**30, 2**30, with_stats=False)[0] for data in chunk])

    def model_step(size: int) -> Callable[[], int]:
        tensors = preprocess.batch(pixels(size))

        def step() -> int:
            predictor(tensors)
            return size

        return step

    def pipeline_step() -> int:
        predictor(preprocess.batch(pixels(batch)))
        return batch

    model, model_cpu = _rate(model_step(batch), duration)
    pipeline, pipeline_cpu = _rate(pipeline_step, duration)
    ceilings = {"model": model, "model_cpu": model_cpu, "pipeline": pipeline, "pipeline_cpu": pipeline_cpu}
    for size in sorted({1, max(batch // 2, 1)}):
        ceilings[f"model_b{size}"] = _rate(model_step(size), duration / 2)[0]
    return ceilings


def offline_curve(ceiling: dict[str, float], max_batch: int) -> dict[int, float]:
    """The model's offline images/s by batch size, from one backend's :func:`offline_ceilings`."""
    by_batch = {int(m[1]): value for key, value in ceiling.items() if (m := re.fullmatch(r"model_b(\d+)", key))}
    return dict(sorted((by_batch | {max_batch: ceiling["model"]}).items()))
