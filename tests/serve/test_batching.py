"""The micro-batcher groups concurrent inputs, keeps each answer with its request, and survives model errors."""

from __future__ import annotations

import time
from concurrent.futures import Future

import numpy as np
import pytest

from image_classifier.api.batching import MicroBatcher


def run_concurrently(max_batch: int, count: int, forward: object = None) -> tuple[list[Future[np.ndarray]], list[int]]:
    sizes: list[int] = []

    def double(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return batch * 2

    batcher = MicroBatcher(forward or double, max_batch=max_batch, max_wait_s=0.05)  # type: ignore[arg-type]
    observed: list[int] = []
    batcher.observe = lambda size, seconds: observed.append(size)
    try:
        with batcher.expecting(count):  # as the app announces uploads it is still decoding
            futures = [batcher.submit(np.full(3, i, dtype=np.float32)) for i in range(count)]
        for future in futures:
            future.exception(timeout=10)
    finally:
        batcher.stop()
    if forward is None:
        assert observed == sizes  # every forward pass is reported to the metrics
    return futures, sizes


def test_concurrent_inputs_are_batched_up_to_the_limit_and_answered_in_order() -> None:
    futures, sizes = run_concurrently(max_batch=4, count=10)
    assert [float(future.result()[0]) for future in futures] == [2.0 * i for i in range(10)]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) == 3


def test_max_batch_one_is_one_forward_per_request() -> None:
    _, sizes = run_concurrently(max_batch=1, count=5)
    assert sizes == [1] * 5


def test_a_failing_forward_fails_its_requests_not_the_batcher() -> None:
    calls = {"n": 0}

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("boom")
        return batch

    futures, _ = run_concurrently(max_batch=2, count=4, forward=flaky)
    assert [future.exception() is not None for future in futures] == [True, True, False, False]
    with pytest.raises(RuntimeError, match="ValueError: boom"):
        futures[0].result()


def test_a_lone_request_does_not_wait_and_stop_answers_what_is_queued() -> None:
    batcher = MicroBatcher(lambda batch: batch + 1, max_batch=8, max_wait_s=5.0)
    started = time.monotonic()
    lone = batcher.submit(np.zeros(2, dtype=np.float32)).result(timeout=10)
    waited = time.monotonic() - started
    queued = [batcher.submit(np.full(2, i, dtype=np.float32)) for i in range(3)]
    batcher.stop()
    assert waited < 1.0  # nothing announced, so no waiting for a fuller batch
    assert [float(out[0]) for out in [lone, *(future.result(timeout=0) for future in queued)]] == [1.0, 1.0, 2.0, 3.0]
