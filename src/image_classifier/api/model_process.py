"""The model in a process of its own, so that its forward passes never wait for the web server's GIL.

An eager PyTorch forward pass takes the GIL back between every layer; while the event loop parses
requests in the same process, each of those hand-overs can wait for the interpreter's switch
interval, and the model runs several times slower than it can. In a child process the model has an
interpreter to itself. Batches go over a pipe (a pickled array: well under a millisecond for a batch
of small images).
"""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from image_classifier.errors import CheckpointError

START_TIMEOUT_S = 300


def _serve(conn: Connection, path: str, threads: int) -> None:
    """The child: load the predictor, report its metadata, then answer batches until told to stop."""
    from image_classifier.api.predictors import load_predictor

    try:
        predictor = load_predictor(path, threads)
    except Exception as error:  # reported to the parent, which raises it as a one-line error
        conn.send(("error", str(error).splitlines()[0] if str(error) else type(error).__name__))
        return
    attributes = ("backend", "model_name", "classes", "data_config", "lineage")
    conn.send(("ready", {name: getattr(predictor, name) for name in attributes}))
    while True:
        try:
            batch = conn.recv()
        except EOFError:  # the server went away
            return
        if batch is None:
            return
        try:
            conn.send(("ok", predictor(batch)))
        except Exception as error:  # a failing batch fails its requests, not the model process
            conn.send(("error", f"{type(error).__name__}: {error}"))


class ModelProcess:
    """A :class:`~image_classifier.api.predictors.Predictor` whose model is loaded and run in a child process."""

    backend: str
    model_name: str
    classes: list[str]
    data_config: dict[str, Any]
    lineage: dict[str, Any]

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        if not Path(path).is_file():
            raise CheckpointError(f"Model not found: {path}")
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited threads or locks
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, str(path), threads), name="model", daemon=True)
        self._process.start()
        child.close()
        self._sending = threading.Lock()
        self._receiving = threading.Condition()
        self._sent = self._received = 0  # batches handed over / answered: the child answers in order
        if not self._conn.poll(START_TIMEOUT_S):
            self.close()
            raise CheckpointError(f"The model process did not load {path} within {START_TIMEOUT_S} s.")
        try:
            status, payload = self._conn.recv()
        except EOFError:
            self.close()
            raise CheckpointError(f"The model process exited while loading {path}.") from None
        if status != "ready":
            self.close()
            raise CheckpointError(payload)
        for name, value in payload.items():
            setattr(self, name, value)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for ``batch``. Callers in several threads pipeline: a batch can be handed over while
        the child still computes the one before, and each caller takes its own answer in turn."""
        with self._sending:
            ticket = self._sent
            self._conn.send(batch)
            self._sent += 1
        with self._receiving:
            self._receiving.wait_for(lambda: self._received == ticket)
            try:
                status, payload = self._conn.recv()
            finally:
                self._received += 1
                self._receiving.notify_all()
        if status != "ok":
            raise RuntimeError(payload)
        return payload

    def close(self) -> None:
        """Stop the child (it finishes the batch in hand first)."""
        if self._process.is_alive():
            try:
                with self._sending:
                    self._conn.send(None)
            except OSError:
                pass
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
