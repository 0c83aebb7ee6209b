"""The api image fetches its model from MODEL_URI at start and listens on $PORT, as Cloud Run runs it.

The container shares the host's network, so it reaches a real HTTP server on 127.0.0.1 serving a real bundle.
Needs a Docker daemon (skips without one); ``IC_DOCKER_BUILD_ARGS`` as in test_images.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from image_classifier.checkpoint import save_bundle
from tests.docker.test_images import build, docker, docker_daemon  # noqa: F401 (docker_daemon: a fixture)
from tests.helpers.bundles import make_bundle
from tests.serve.conftest import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def api_image(docker_daemon: None) -> str:  # noqa: F811 (the fixture, used by name)
    return build("api")


@pytest.fixture
def model_url(http_server: tuple[str, Path]) -> tuple[str, str]:
    """A baseline-CNN bundle on a real HTTP server on 127.0.0.1: ``(URL, its SHA-256)``."""
    base, directory = http_server
    path = save_bundle(directory / "best.pt", make_bundle(["a", "b", "c"], lineage={"git_commit": "docker-test"}))
    return f"{base}/best.pt", hashlib.sha256(path.read_bytes()).hexdigest()


def run_api(image: str, port: int, **env: str) -> str:
    """Start the api container on the host's network with ``env``; its id."""
    flags = [item for name, value in {"PORT": str(port), **env}.items() for item in ("-e", f"{name}={value}")]
    return docker("run", "-d", "--network", "host", *flags, image).stdout.strip()


def first_answer(url: str, container: str, timeout: float = 180) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(1)
    raise AssertionError(docker("logs", container, check=False).stderr)


@pytest.fixture
def containers() -> Iterator[list[str]]:
    started: list[str] = []
    yield started
    for container in started:
        docker("rm", "-f", container, check=False)


def test_the_api_image_serves_the_model_fetched_from_model_uri_on_port(
    api_image: str, model_url: tuple[str, str], containers: list[str]
) -> None:
    url, sha256 = model_url
    port = free_port()
    containers.append(run_api(api_image, port, MODEL_URI=url, MODEL_SHA256=sha256))
    health = first_answer(f"http://127.0.0.1:{port}/health", containers[0])
    assert health.status_code == 200, health.text
    assert httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=10).json()["lineage"]["git_commit"] == "docker-test"


def test_in_a_started_container_a_bad_model_uri_is_a_503_with_the_reason(
    api_image: str, model_url: tuple[str, str], containers: list[str]
) -> None:
    url, _ = model_url
    port = free_port()
    containers.append(run_api(api_image, port, MODEL_URI=url, MODEL_SHA256="0" * 64))
    health = first_answer(f"http://127.0.0.1:{port}/health", containers[0])
    assert health.status_code == 503
    assert health.json()["detail"].startswith(f"No model: {url} has SHA-256 ")
    logs = docker("logs", containers[0], check=False)
    assert "error: " in logs.stdout + logs.stderr and "Traceback" not in logs.stdout + logs.stderr
