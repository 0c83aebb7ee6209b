"""Micro-batching: concurrent requests share one forward pass, run off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

Observer = Callable[[int, float], None]
Pending = tuple[np.ndarray, asyncio.Future[np.ndarray]]


class MicroBatcher:
    """Runs ``forward`` once for up to ``max_batch`` queued inputs, in inference threads of its own.

    A thread takes whatever is queued the moment it is free (continuous batching), so the model
    never waits for the event loop, and inputs that arrive while it computes form the next batch. A
    batch waits up to ``max_wait_s`` for more inputs only while requests announced with
    :meth:`expecting` are still being prepared, so a lone request never waits. ``max_batch=1`` is one
    request per forward pass. With ``in_flight=2`` a second thread forms and hands over the next
    batch while the first waits for its result, for a ``forward`` that queues work elsewhere (a model
    process) rather than computing in the calling thread. Results go back to the event loop with
    ``call_soon_threadsafe``.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        max_wait_s: float,
        observe: Observer | None = None,
        in_flight: int = 1,
    ) -> None:
        self.forward = forward
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.observe = observe
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._collecting = threading.Lock()  # one batch forms at a time
        self._threads = [
            threading.Thread(target=self._run, name=f"inference-{i}", daemon=True) for i in range(in_flight)
        ]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._incoming = 0  # written on the event loop only; the inference threads read it

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for thread in self._threads:
            thread.start()

    async def stop(self) -> None:
        """Finish the queued inputs, then end the inference threads."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            if thread.is_alive():
                await asyncio.to_thread(thread.join)

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
        self._queue.put((item, future))
        return future

    async def submit(self, item: np.ndarray) -> np.ndarray:
        """The model's output row for one input."""
        return await self.enqueue(item)

    def _collect(self) -> tuple[list[Pending], bool]:
        """The next batch, and whether the batcher was asked to stop."""
        first = self._queue.get()
        if first is None:
            return [], True
        items, deadline = [first], time.monotonic() + self.max_wait_s
        while len(items) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if self._incoming == 0 or remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return items, True
            items.append(item)
        return items, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            with self._collecting:
                items, stopping = self._collect()
            live = [(x, f) for x, f in items if not f.cancelled()]
            if not live:
                continue
            start = time.perf_counter()
            try:
                outputs = self.forward(np.stack([x for x, _ in live]))
            except Exception as error:  # a failing model fails its requests, never the batcher
                self._call(_fail, live, error)
                continue
            if self.observe is not None:
                self.observe(len(live), time.perf_counter() - start)
            self._call(_deliver, live, outputs)

    def _call(self, callback: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(callback, *args)


def _deliver(live: list[Pending], outputs: np.ndarray) -> None:
    for row, (_, future) in zip(outputs, live, strict=True):
        if not future.done():
            future.set_result(row)


def _fail(live: list[Pending], error: Exception) -> None:
    for _, future in live:
        if not future.done():
            future.set_exception(error)
