"""Build the train and api images, train in a container, then serve the bundle from the api container.

Needs a Docker daemon (skips without one). ``IC_DOCKER_BUILD_ARGS`` adds arguments to ``docker build``, e.g.
``--network host --build-arg TORCH_INDEX_URL=http://127.0.0.1:8765/simple`` where the PyTorch index is unreachable.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from image_classifier.checkpoint import load_bundle
from tests.helpers.tools import require_docker_daemon

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_TRAINING = [
    "trainer.max_epochs=1",
    "trainer.device=cpu",
    "data.image_size=32",
    "data.generate.train_per_class=8",
    "data.generate.val_per_class=4",
    "data.generate.test_per_class=4",
    "logger=none",
]


def docker(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        command = shlex.join(["docker", *args])
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def inspect(image: str) -> dict[str, Any]:
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    assert isinstance(config, dict)
    return config


@pytest.fixture(scope="session")
def docker_daemon() -> None:
    require_docker_daemon()


def build(name: str) -> str:
    tag = f"image-classifier-{name}:test"
    extra = shlex.split(os.environ.get("IC_DOCKER_BUILD_ARGS", ""))
    dockerfile = REPO_ROOT / "dockerfiles" / f"{name}.Dockerfile"
    docker("build", "-f", str(dockerfile), "-t", tag, *extra, str(REPO_ROOT), timeout=3600)
    return tag


@pytest.fixture(scope="session")
def train_image(docker_daemon: None) -> str:
    return build("train")


@pytest.fixture(scope="session")
def api_image(docker_daemon: None) -> str:
    return build("api")


def writable_dir(path: Path) -> Path:
    """A host directory the container's non-root user can write to."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


@pytest.fixture(scope="session")
def trained_bundle(train_image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train one epoch in the container; the bundle lands in the mounted outputs directory."""
    root = tmp_path_factory.mktemp("docker-train")
    outputs, data = writable_dir(root / "outputs"), writable_dir(root / "data")
    docker(
        "run", "--rm", "-v", f"{outputs}:/app/outputs", "-v", f"{data}:/app/data",
        train_image, *TINY_TRAINING, "hydra.run.dir=/app/outputs/run",
        timeout=900,
    )  # fmt: skip
    return outputs / "run" / "checkpoints" / "best.pt"


def test_train_image_writes_a_loadable_bundle_to_the_mounted_outputs(trained_bundle: Path) -> None:
    bundle = load_bundle(trained_bundle)
    assert len(bundle.classes) == 10
    assert (trained_bundle.parents[1] / "metrics.json").is_file()
    assert (trained_bundle.parents[3] / "data" / "processed" / "shapes").is_dir()


def test_train_image_runs_as_non_root_with_volumes_and_no_baked_key(train_image: str) -> None:
    config = inspect(train_image)
    assert config["User"] not in ("", "root", "0")
    assert {"/app/data", "/app/models", "/app/outputs"} <= set(config["Volumes"])
    assert not any(variable.startswith("WANDB_API_KEY") for variable in config["Env"])


def test_train_image_reports_a_bad_override_in_one_line(train_image: str) -> None:
    result = docker("run", "--rm", train_image, "trainer.max_epochs=0", check=False, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: trainer.max_epochs")


@pytest.fixture
def api_container(api_image: str, trained_bundle: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The api image serving the trained bundle from a read-only mount: ``(base URL, container id)``."""
    models = writable_dir(tmp_path / "models")
    shutil.copy(trained_bundle, models / "model.pt")
    container = docker(
        "run", "-d", "-p", "127.0.0.1::8000", "-v", f"{models}:/app/models:ro", "--health-interval=2s", api_image
    ).stdout.strip()  # fmt: skip
    try:
        host_port = docker("port", container, "8000/tcp").stdout.split()[0]
        url = f"http://{host_port}"
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(docker("logs", container, check=False).stderr)
            time.sleep(1)
        yield url, container
    finally:
        docker("rm", "-f", container, check=False)


def test_api_image_answers_health_and_predict(api_container: tuple[str, str]) -> None:
    url, _ = api_container
    assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "ok"
    image = io.BytesIO()
    Image.new("RGB", (40, 40), (30, 160, 200)).save(image, format="PNG")
    response = httpx.post(f"{url}/predict", files={"file": ("shape.png", image.getvalue(), "image/png")}, timeout=30)
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert 0.0 <= prediction["confidence"] <= 1.0


def test_api_image_healthcheck_turns_healthy_as_non_root(api_container: tuple[str, str]) -> None:
    _, container = api_container
    deadline = time.monotonic() + 60
    while (status := docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()) != "healthy":
        assert status == "starting" and time.monotonic() < deadline, status
        time.sleep(1)
    assert docker("exec", container, "id", "-u").stdout.strip() != "0"
