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
            with batcher.expecting(count):  # as the app announces uploads it is still decoding
                pending = [batcher.enqueue(x) for x in inputs]
            return await asyncio.gather(*pending, return_exceptions=True)
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


def test_a_lone_request_does_not_wait_and_stop_answers_what_is_queued() -> None:
    async def main() -> tuple[float, list[object]]:
        batcher = MicroBatcher(lambda batch: batch + 1, max_batch=8, max_wait_s=5.0)
        batcher.start()
        started = asyncio.get_running_loop().time()
        lone = await batcher.submit(np.zeros(2, dtype=np.float32))
        waited = asyncio.get_running_loop().time() - started
        queued = [batcher.enqueue(np.full(2, i, dtype=np.float32)) for i in range(3)]
        await batcher.stop()
        return waited, [lone, *(await asyncio.gather(*queued))]

    waited, outputs = asyncio.run(main())
    assert waited < 1.0  # nothing announced, so no waiting for a fuller batch
    assert [float(out[0]) for out in outputs] == [1.0, 1.0, 2.0, 3.0]  # type: ignore[index]
