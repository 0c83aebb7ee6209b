"""Fixtures for the serving tests: a tiny dataset, a bundle, and real uvicorn servers on 127.0.0.1."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from image_classifier.checkpoint import save_bundle
from image_classifier.data.layout import PreparedDataset
from image_classifier.data.shapes import ShapesSpec, generate_shapes
from image_classifier.runtime import stop_process
from tests.helpers.bundles import make_bundle

APP = "image_classifier.api.app:create_app"
IMAGE_SIZE = 32
SHAPES = ShapesSpec(seed=0, train_per_class=3, val_per_class=1, test_per_class=2)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    prediction_log: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png_bytes(
    size: tuple[int, int] = (48, 40), colour: tuple[int, int, int] = (200, 30, 30), mode: str = "RGB"
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 0).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> PreparedDataset:
    """A tiny generated shapes dataset under ``<root>/processed/shapes``."""
    root = tmp_path_factory.mktemp("data")
    return generate_shapes(root / "processed" / "shapes", SHAPES)


@pytest.fixture(scope="session")
def bundle_path(shapes: PreparedDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline-CNN bundle for the shapes classes at 32 px (seeded weights: serving needs no training)."""
    bundle = make_bundle(
        shapes.classes,
        image_size=IMAGE_SIZE,
        config={"data": {"name": "shapes", "image_size": IMAGE_SIZE}},
        lineage={"git_commit": "test", "data_fingerprint": shapes.fingerprint},
        metrics={"test/accuracy": 0.1},
    )
    return save_bundle(tmp_path_factory.mktemp("model") / "best.pt", bundle)


def start_server(model: Path, workdir: Path, **env: str) -> Server:
    """``uvicorn --factory`` over :data:`APP` in a subprocess on a free loopback port, once healthy."""
    port = free_port()
    log_path, prediction_log = workdir / "uvicorn.log", workdir / "predictions.jsonl"
    environment = {**os.environ, "MODEL_PATH": str(model), "IC_PREDICTION_LOG": str(prediction_log), **env}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", APP, "--host", "127.0.0.1", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log_path, prediction_log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    stop_server(server)
    raise RuntimeError(f"uvicorn did not become healthy:\n{log_path.read_text()}")


def stop_server(server: Server) -> None:
    stop_process(server.process, timeout=20)


# Limits small enough that the tests can cross them cheaply.
LIMITS = {
    "IC_MAX_FILES": "4",
    "IC_MAX_UPLOAD_BYTES": "200000",
    "IC_MAX_REQUEST_BYTES": "1000000",
    "IC_MAX_PIXELS": "1000000",
    "IC_MAX_ASPECT_RATIO": "8",
    "IC_MAX_REQUEST_PIXELS": "1500000",
    "IC_MAX_BATCH": "8",
    "IC_MAX_WAIT_MS": "20",
}


@pytest.fixture(scope="session")
def server(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API serving the bundle (eager PyTorch), with small limits and a prediction log."""
    running = start_server(bundle_path, tmp_path_factory.mktemp("server"), **LIMITS)
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def in_process_server(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The same API with the model in the server process (``IC_MODEL_PROCESS=false``)."""
    running = start_server(bundle_path, tmp_path_factory.mktemp("in-process"), **LIMITS, IC_MODEL_PROCESS="false")
    yield running
    stop_server(running)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http
