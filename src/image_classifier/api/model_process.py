"""The model in a process of its own, forming its batches itself the moment it is free.

An eager PyTorch forward pass takes the GIL back between every layer; while the event loop parses
requests in the same process, each of those hand-overs can wait for the interpreter's switch
interval, and the model runs several times slower than it can. In a child process the model has an
interpreter to itself.

Each prepared image goes to the child as soon as it is decoded, over a pipe: a sender thread writes
it (the event loop never blocks on the pipe), and a reader thread in the child takes it out at once
(a pipe holds only a few images, and a full one would hold the rest back). The child runs
:func:`~image_classifier.api.batching.run_batches` on that queue: when a forward pass ends, every
image that arrived during it is in the next batch. A batch formed in the server instead would have
to be closed before the model is free, and would miss the images that arrive in between.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import queue
import threading
from collections.abc import Hashable, Iterator
from concurrent.futures import Future
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import numpy as np

from image_classifier.api.batching import ModelUnavailable, Observer, run_batches, settle
from image_classifier.errors import CheckpointError
from image_classifier.redact import redact

START_TIMEOUT_S = 300
INFO = ("backend", "model_name", "classes", "data_config", "lineage")


def _read_into(conn: Connection, inbox: queue.SimpleQueue[Any]) -> None:
    """Move inputs from the pipe into ``inbox`` as they arrive, so that the pipe never fills up while the
    model computes (a pipe holds only a few images); the server going away reads as ``None`` (stop)."""
    while True:
        try:
            item = conn.recv()
        except (EOFError, OSError):
            item = None
        inbox.put(item)
        if item is None:
            return


def _serve(
    requests: Connection,
    results: Connection,
    incoming: Synchronized,
    path: str,
    threads: int,
    max_batch: int,
    max_wait_s: float,
) -> None:
    """The child: load the predictor, report what it is, then batch and answer until ``None`` arrives."""
    from image_classifier.api.backends import load_predictor, pixel_forward

    try:
        predictor = load_predictor(path, threads)
    except Exception as error:  # reported to the parent, which raises it as a one-line error
        results.send(("error", redact(str(error).splitlines()[0]) if str(error) else type(error).__name__))
        return
    results.send(("ready", {name: getattr(predictor, name) for name in INFO}))
    forward = pixel_forward(predictor)
    gc.freeze()  # torch and the model live as long as the process: full collections need not walk them
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_read_into, args=(requests, inbox), name="requests", daemon=True).start()
    run_batches(
        inbox,
        forward,
        max_batch,
        max_wait_s,
        incoming=lambda: incoming.value,
        deliver=lambda keys, outputs, seconds: results.send(("ok", keys, outputs, seconds)),
        fail=lambda keys, message: results.send(("failed", keys, message)),
    )
    with contextlib.suppress(OSError):  # the server may be gone already
        results.send(("stopped", None))


class ModelProcess:
    """A batcher (:class:`~image_classifier.api.batching.Batcher`) whose model is loaded and run in a child.

    Also describes the model: ``backend``, ``model_name``, ``classes``, ``data_config``, ``lineage``.
    Inputs are uint8 pixels ``(C, H, W)``; the child normalises each batch before its forward pass.
    """

    backend: str
    model_name: str
    classes: list[str]
    data_config: dict[str, Any]
    lineage: dict[str, Any]

    def __init__(self, path: str | Path, threads: int = 0, max_batch: int = 16, max_wait_s: float = 0.005) -> None:
        if not Path(path).is_file():
            raise CheckpointError(f"Model not found: {path}")
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or locks
        child_requests, self._requests = context.Pipe(duplex=False)
        self._results, child_results = context.Pipe(duplex=False)
        self._incoming: Synchronized = context.Value("i", 0, lock=False)  # written by the event loop's thread only
        self._process = context.Process(
            target=_serve,
            args=(child_requests, child_results, self._incoming, str(path), threads, max_batch, max_wait_s),
            name="model",
            daemon=True,
        )
        self._process.start()
        child_requests.close()
        child_results.close()
        status, payload = self._first_message(path)
        if status != "ready":
            self._end_child()
            raise CheckpointError(payload)
        for name, value in payload.items():
            setattr(self, name, value)
        self.observe: Observer | None = None
        self.unavailable: str | None = None  # why the model cannot answer any more
        self._pending: dict[int, Future[np.ndarray]] = {}
        self._lock = threading.Lock()
        self._keys = itertools.count()
        self._outbox: queue.SimpleQueue[tuple[int, np.ndarray] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._send, name="model-requests", daemon=True),
            threading.Thread(target=self._receive, name="model-results", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _first_message(self, path: str | Path) -> tuple[str, Any]:
        if not self._results.poll(START_TIMEOUT_S):
            self._end_child()
            raise CheckpointError(f"The model process did not load {path} within {START_TIMEOUT_S} s.")
        try:
            return self._results.recv()
        except EOFError:
            self._end_child()
            raise CheckpointError(f"The model process exited while loading {path}.") from None

    @contextlib.contextmanager
    def expecting(self, count: int) -> Iterator[None]:
        """Announce ``count`` inputs being prepared, so that a forming batch waits for them."""
        self._incoming.value += count
        try:
            yield
        finally:
            self._incoming.value -= count

    def submit(self, item: np.ndarray) -> Future[np.ndarray]:
        """Send one input to the child; the future resolves to the model's probabilities for it."""
        future: Future[np.ndarray] = Future()
        with self._lock:
            if self.unavailable is not None:
                future.set_exception(ModelUnavailable(self.unavailable))
                return future
            key = next(self._keys)
            self._pending[key] = future
        self._outbox.put((key, item))
        return future

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities for a stack of uint8 images, waiting for them (for scripts and tests)."""
        futures = [self.submit(item) for item in pixels]
        return np.stack([future.result() for future in futures])

    def _send(self) -> None:
        """Write queued inputs to the child, until ``None`` (passed on: the child stops) or the child dies."""
        while True:
            item = self._outbox.get()
            try:
                self._requests.send(item)
            except OSError:
                return  # the child is gone; the receiver fails what is pending
            if item is None:
                return

    def _receive(self) -> None:
        """Hand each answer to its future, until the child stops or dies."""
        while True:
            try:
                message = self._results.recv()
            except (EOFError, OSError):
                self._process.join(timeout=5)
                self._give_up(f"The model process exited (status {self._process.exitcode}).")
                return
            kind, *rest = message
            if kind == "stopped":
                self._give_up("The service is stopping.")
                return
            if kind == "ok":
                keys, outputs, seconds = rest
                if self.observe is not None:
                    self.observe(len(keys), seconds)
                for key, row in zip(keys, outputs, strict=True):
                    self._settle(key, row=row)
            else:
                keys, text = rest
                for key in keys:
                    self._settle(key, error=RuntimeError(text))

    def _settle(self, key: Hashable, row: np.ndarray | None = None, error: Exception | None = None) -> None:
        with self._lock:
            future = self._pending.pop(key, None)  # type: ignore[call-overload]
        if future is not None:
            settle(future, row, error)

    def _give_up(self, reason: str) -> None:
        with self._lock:
            self.unavailable = reason
            pending, self._pending = self._pending, {}
        for future in pending.values():
            settle(future, error=ModelUnavailable(reason))

    def stop(self) -> None:
        """Answer what is queued, then end the child."""
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=60)
        self._end_child()

    def _end_child(self) -> None:
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._requests.close()
        self._results.close()
