"""Micro-batching: concurrent requests share one forward pass, run off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

Observer = Callable[[int, float], None]


class MicroBatcher:
    """Runs ``forward`` once for up to ``max_batch`` queued inputs.

    ``forward`` runs in a single worker thread, so the event loop keeps accepting requests while the
    model computes, and inputs that arrive meanwhile form the next batch. A batch waits up to
    ``max_wait_s`` for more inputs only while requests announced with :meth:`expecting` are still being
    prepared, so a lone request never waits. ``max_batch=1`` is one request per forward pass.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        max_wait_s: float,
        observe: Observer | None = None,
    ) -> None:
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.observe = observe
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._task: asyncio.Task[None] | None = None
        self._incoming = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)

    @contextlib.contextmanager
    def expecting(self, count: int) -> Iterator[None]:
        """Announce ``count`` inputs being prepared, so that a forming batch waits for them."""
        self._incoming += count
        try:
            yield
        finally:
            self._incoming -= count

    def enqueue(self, item: np.ndarray) -> asyncio.Future[np.ndarray]:
        """Queue one input; the future resolves to the model's output row for it."""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        return future

    async def submit(self, item: np.ndarray) -> np.ndarray:
        """The model's output row for one input."""
        return await self.enqueue(item)

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]:
        loop = asyncio.get_running_loop()
        items = [await self._queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(items) < self.max_batch:
            if not self._queue.empty():
                items.append(self._queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if self._incoming == 0 or remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return items

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            live = [(x, f) for x, f in items if not f.cancelled()]
            if not live:
                continue
            batch = np.stack([x for x, _ in live])
            start = loop.time()
            try:
                outputs = await loop.run_in_executor(self._executor, self.forward, batch)
            except Exception as error:  # a failing model fails its requests, never the batcher
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                continue
            if self.observe is not None:
                self.observe(len(live), loop.time() - start)
            for row, (_, future) in zip(outputs, live, strict=True):
                if not future.done():
                    future.set_result(row)
