"""The micro-batcher groups concurrent inputs, keeps each answer with its request, and survives model errors."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from image_classifier.api.batching import MicroBatcher


def run_concurrently(max_batch: int, count: int, forward: object = None) -> tuple[list[object], list[int]]:
    sizes: list[int] = []

    def double(batch: np.ndarray) -> np.ndarray:
        sizes.append(len(batch))
        return batch * 2

    async def main() -> list[object]:
        batcher = MicroBatcher(forward or double, max_batch=max_batch, max_wait_s=0.05)  # type: ignore[arg-type]
        batcher.start()
        try:
            inputs = [np.full(3, i, dtype=np.float32) for i in range(count)]
            return await asyncio.gather(*(batcher.submit(x) for x in inputs), return_exceptions=True)
        finally:
            await batcher.stop()

    return asyncio.run(main()), sizes


def test_concurrent_inputs_are_batched_up_to_the_limit_and_answered_in_order() -> None:
    outputs, sizes = run_concurrently(max_batch=4, count=10)
    assert [float(out[0]) for out in outputs] == [2.0 * i for i in range(10)]  # type: ignore[index]
    assert sum(sizes) == 10 and max(sizes) == 4 and len(sizes) == 3


def test_max_batch_one_is_one_forward_per_request() -> None:
    _, sizes = run_concurrently(max_batch=1, count=5)
    assert sizes == [1] * 5


def test_a_failing_forward_fails_its_requests_not_the_batcher() -> None:
    calls = {"n": 0}

    def flaky(batch: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return batch

    outputs, _ = run_concurrently(max_batch=2, count=4, forward=flaky)
    assert [isinstance(out, RuntimeError) for out in outputs] == [True, True, False, False]
    with pytest.raises(RuntimeError):
        raise outputs[0]  # type: ignore[misc]
