"""Micro-batching: concurrent requests share one forward pass, formed the moment the model is free.

One rule forms every batch (:func:`run_batches`): when the model is free it takes whatever is
queued, up to ``max_batch`` (continuous batching), so inputs that arrive while it computes form the
next batch. It waits up to ``max_wait_s`` for more only while inputs announced with ``expecting``
are still being prepared, so a lone request never waits. ``max_batch=1`` is one request per
forward pass. :class:`MicroBatcher` runs the rule in a thread of the server process;
:class:`~image_classifier.api.model_process.ModelProcess` runs it next to the model in a child.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any, Protocol

import numpy as np

Observer = Callable[[int, float], None]
"""Called with the size and the forward-pass seconds of each batch."""


class ModelUnavailable(RuntimeError):
    """The model can no longer answer: its process exited, or the service is stopping."""


class Batcher(Protocol):
    """What the app needs from a batcher: announce inputs, submit them, stop; and whether it still works."""

    observe: Observer | None
    unavailable: str | None

    def expecting(self, count: int) -> contextlib.AbstractContextManager[None]: ...

    def submit(self, item: np.ndarray) -> Future[np.ndarray]: ...

    def stop(self) -> None: ...


class Inbox(Protocol):
    """A queue of ``(key, input)`` pairs, such as ``queue.SimpleQueue``; ``None`` stops."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any: ...

    def get_nowait(self) -> Any: ...


def collect_batch(
    inbox: Inbox, max_batch: int, max_wait_s: float, incoming: Callable[[], int]
) -> tuple[list[tuple[Hashable, np.ndarray]], bool]:
    """The next batch (blocking for its first input), and whether ``None`` (stop) was read."""
    first = inbox.get()
    if first is None:
        return [], True
    items, deadline = [first], time.monotonic() + max_wait_s
    while len(items) < max_batch:
        try:
            item = inbox.get_nowait()
        except queue.Empty:
            remaining = deadline - time.monotonic()
            if incoming() <= 0 or remaining <= 0:
                break
            try:
                item = inbox.get(timeout=remaining)
            except queue.Empty:
                break
        if item is None:
            return items, True
        items.append(item)
    return items, False


def run_batches(
    inbox: Inbox,
    forward: Callable[[np.ndarray], np.ndarray],
    max_batch: int,
    max_wait_s: float,
    incoming: Callable[[], int],
    deliver: Callable[[list[Hashable], np.ndarray, float], None],
    fail: Callable[[list[Hashable], str], None],
) -> None:
    """Form batches, run ``forward`` on each, and hand back its rows by key, until ``None`` is read.

    ``deliver(keys, outputs, seconds)`` gets each batch's answers; ``fail(keys, message)`` gets a batch
    whose forward pass raised, and the loop goes on: a bad batch fails its own requests only.
    """
    stopping = False
    while not stopping:
        items, stopping = collect_batch(inbox, max_batch, max_wait_s, incoming)
        if not items:
            continue
        keys = [key for key, _ in items]
        start = time.perf_counter()
        try:
            outputs = forward(np.stack([array for _, array in items]))
        except Exception as error:  # a failing model fails its requests, never the batcher
            fail(keys, f"{type(error).__name__}: {error}")
            continue
        deliver(keys, outputs, time.perf_counter() - start)


class MicroBatcher:
    """:func:`run_batches` in an inference thread of the server process, around an in-process ``forward``."""

    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_batch: int, max_wait_s: float) -> None:
        self.observe: Observer | None = None
        self.unavailable: str | None = None
        self._queue: queue.SimpleQueue[tuple[Future[np.ndarray], np.ndarray] | None] = queue.SimpleQueue()
        self._incoming = 0  # written by the event loop's thread only
        self._thread = threading.Thread(
            target=run_batches,
            args=(self._queue, forward, max_batch, max_wait_s, lambda: self._incoming, self._deliver, self._fail),
            name="inference",
            daemon=True,
        )
        self._thread.start()

    @contextlib.contextmanager
    def expecting(self, count: int) -> Iterator[None]:
        """Announce ``count`` inputs being prepared, so that a forming batch waits for them."""
        self._incoming += count
        try:
            yield
        finally:
            self._incoming -= count

    def submit(self, item: np.ndarray) -> Future[np.ndarray]:
        """Queue one input; the future resolves to the model's output row for it."""
        future: Future[np.ndarray] = Future()
        self._queue.put((future, item))
        return future

    def stop(self) -> None:
        """Answer what is queued, then end the inference thread."""
        self._queue.put(None)
        self._thread.join()

    def _deliver(self, keys: list[Hashable], outputs: np.ndarray, seconds: float) -> None:
        if self.observe is not None:
            self.observe(len(keys), seconds)
        for future, row in zip(keys, outputs, strict=True):
            settle(future, row)  # type: ignore[arg-type]

    def _fail(self, keys: list[Hashable], message: str) -> None:
        for future in keys:
            settle(future, error=RuntimeError(message))  # type: ignore[arg-type]


def settle(future: Future[np.ndarray], row: np.ndarray | None = None, error: Exception | None = None) -> None:
    """Resolve ``future``, unless its request went away and cancelled it."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(row)  # type: ignore[arg-type]
