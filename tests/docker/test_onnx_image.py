"""The slim image (dockerfiles/api-onnx.Dockerfile) serves an ONNX export without torch, and passes the full
image's API, web-page and hostile-input tests (imported from tests/serve and run against the container).

The container shares the host's network and listens on ``$PORT``; it runs as uid 1000 with the export mounted
read-only. Needs a Docker daemon (skips without one); ``IC_DOCKER_BUILD_ARGS`` as in test_images.py.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from image_classifier.data.layout import PreparedDataset
from image_classifier.export import export
from tests.docker.test_images import build, docker, docker_daemon, writable_dir  # noqa: F401 (a fixture)
from tests.docker.test_model_uri_image import first_answer, run_api
from tests.serve.conftest import LIMITS, Server, bundle_path, free_port, shapes  # noqa: F401 (fixtures)
from tests.serve.test_api import (  # noqa: F401 (run here against the container)
    test_bad_input_gets_a_clear_json_error,
    test_batch_of_files_keeps_order,
    test_body_over_the_request_limit_is_refused,
    test_grayscale_and_rgba_images_are_converted_to_rgb,
    test_metrics_count_requests_errors_and_predictions,
    test_non_multipart_body_is_unsupported_media_type,
    test_predict_one_image_gives_label_confidence_and_top_k,
    test_top_k_is_capped_at_the_number_of_classes,
)
from tests.serve.test_fuzz import (  # noqa: F401 (run here against the container)
    api_schema,
    test_openapi_fuzz_never_gets_a_server_error,
    test_uploading_any_bytes_never_gets_a_server_error,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def onnx_image(docker_daemon: None) -> str:  # noqa: F811 (the fixture, used by name)
    return build("api-onnx")


@pytest.fixture(scope="module")
def models(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A directory holding the export as ``model.onnx`` (the image's default MODEL_PATH) and the bundle."""
    directory = writable_dir(tmp_path_factory.mktemp("slim-models"))
    export(bundle_path, directory / "model.onnx")
    shutil.copy(bundle_path, directory / "best.pt")
    return directory


def start(image: str, models: Path, **env: str) -> tuple[str, str]:
    """The slim container on the host's network with ``models`` mounted: ``(base URL, container id)``."""
    port = free_port()
    flags = [item for name, value in {"PORT": str(port), **env}.items() for item in ("-e", f"{name}={value}")]
    container = docker(
        "run", "-d", "--network", "host", "-v", f"{models}:/app/models:ro", *flags, image
    ).stdout.strip()  # fmt: skip
    return f"http://127.0.0.1:{port}", container


@pytest.fixture(scope="module")
def server(onnx_image: str, models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The slim container serving the export with the API tests' limits, as the tests' :class:`Server`."""
    url, container = start(onnx_image, models, **LIMITS)
    try:
        assert first_answer(f"{url}/health", container).status_code == 200
        workdir = tmp_path_factory.mktemp("slim-server")
        yield Server(url, None, workdir / "log", workdir / "predictions.jsonl")  # type: ignore[arg-type]
    finally:
        docker("rm", "-f", container, check=False)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as http:
        yield http


def test_the_slim_image_serves_the_export_with_onnx_runtime_as_uid_1000(
    server: Server,
    client: httpx.Client,
    shapes: PreparedDataset,  # noqa: F811 (the fixture)
    onnx_image: str,
) -> None:
    assert client.get("/health").json() == {"status": "ok", "model": "baseline_cnn", "backend": "onnxruntime"}
    meta = client.get("/metadata").json()
    assert meta["classes"] == shapes.classes and meta["lineage"]["data_fingerprint"] == shapes.fingerprint
    assert docker("run", "--rm", onnx_image, "id", "-u").stdout.strip() == "1000"
    no_torch = docker("run", "--rm", onnx_image, "python", "-c", "import torch", check=False)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr


def test_the_slim_image_serves_the_web_page(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert client.get("/static/app.js").status_code == 200


def test_the_slim_image_fetches_an_export_from_model_uri(
    onnx_image: str, models: Path, http_server: tuple[str, Path]
) -> None:
    base, directory = http_server
    shutil.copy(models / "model.onnx", directory / "model.onnx")
    sha256 = hashlib.sha256((models / "model.onnx").read_bytes()).hexdigest()
    port = free_port()
    container = run_api(onnx_image, port, MODEL_URI=f"{base}/model.onnx", MODEL_SHA256=sha256)
    try:
        health = first_answer(f"http://127.0.0.1:{port}/health", container)
        assert health.status_code == 200 and health.json()["backend"] == "onnxruntime", health.text
    finally:
        docker("rm", "-f", container, check=False)


def test_a_bundle_given_to_the_slim_image_is_a_503_with_the_reason(onnx_image: str, models: Path) -> None:
    url, container = start(onnx_image, models, MODEL_PATH="/app/models/best.pt")
    try:
        health = first_answer(f"{url}/health", container)
        assert health.status_code == 503
        assert "checkpoint bundle, and this install has no PyTorch" in health.json()["detail"]
        logs = docker("logs", container, check=False)
        assert "Traceback" not in logs.stdout + logs.stderr
    finally:
        docker("rm", "-f", container, check=False)
