"""The ONNX server's import set: it starts, answers and predicts with the training stack unimportable.

Each server runs with a ``sitecustomize`` (:data:`image_classifier.bench.slim.BLOCKER`) that makes torch, timm,
torchvision and the rest of the training stack raise on import and records every attempt, in the server and in its
model process alike (the child inherits ``PYTHONPATH``), as the slim install (``serving/``) has none of them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from image_classifier.api.backends import is_onnx, load_predictor
from image_classifier.bench import slim
from image_classifier.export import export
from image_classifier.preprocess import eval_transform
from tests.conftest import REPO_ROOT
from tests.serve.conftest import LIMITS, Server, png_bytes, start_server, stop_server


@pytest.fixture(scope="module")
def onnx_model(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx-slim") / "model.onnx"
    export(bundle_path, path)
    return path


@pytest.fixture(scope="module")
def torchless_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for a process (and its children) in which the training stack cannot be imported."""
    return slim.torchless_env(tmp_path_factory.mktemp("torchless"), REPO_ROOT / "src")


def attempted_imports(env: dict[str, str]) -> list[str]:
    return Path(env["IC_IMPORT_ATTEMPTS"]).read_text().split()


@pytest.fixture(scope="module")
def torchless_server(
    onnx_model: Path, torchless_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_server(onnx_model, tmp_path_factory.mktemp("torchless-server"), **LIMITS, **torchless_env)
    yield running
    stop_server(running)


def test_the_onnx_server_serves_without_importing_the_training_stack(
    torchless_server: Server, torchless_env: dict[str, str]
) -> None:
    with torchless_server.client() as client:
        assert client.get("/health").json()["backend"] == "onnxruntime"
        response = client.post("/predict", files={"file": ("red.png", png_bytes(), "image/png")})
        assert response.status_code == 200, response.text
        assert len(response.json()["predictions"][0]["top_k"]) == 3
        assert client.get("/metadata").json()["lineage"]["git_commit"] == "test"
        assert client.post("/predict", files={"file": ("x.png", b"not an image", "image/png")}).status_code == 400
        assert client.get("/").status_code == 200
    assert attempted_imports(torchless_env) == []


def test_the_onnx_server_predicts_what_the_bundle_does_in_pytorch(torchless_server: Server, bundle_path: Path) -> None:
    """Pillow + numpy preprocessing and ONNX Runtime, against timm's transform and eager PyTorch."""
    image = png_bytes((90, 41), (20, 140, 220))
    response = httpx.post(f"{torchless_server.url}/predict?top_k=10", files={"file": ("a.png", image)}, timeout=30)
    served = response.json()["predictions"][0]["top_k"]
    bundle = load_predictor(bundle_path)
    pixels = Image.open(io.BytesIO(image)).convert("RGB")
    probabilities = bundle(eval_transform(bundle.data_config)(pixels)[None].numpy())[0]
    expected = {name: float(p) for name, p in zip(bundle.classes, probabilities, strict=True)}
    assert served == pytest.approx(expected, abs=1e-5)
    assert next(iter(served)) == max(expected, key=expected.__getitem__)


def test_a_bundle_on_an_install_without_torch_is_a_one_line_error(
    bundle_path: Path, torchless_env: dict[str, str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "image_classifier.api", "--model", str(bundle_path)],
        env={**os.environ, **torchless_env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {bundle_path} is a checkpoint bundle, and this install has no PyTorch")
    assert "ONNX exports only" in line


def test_a_model_file_without_a_suffix_is_recognised_by_its_content(
    onnx_model: Path, bundle_path: Path, tmp_path: Path
) -> None:
    """Content-addressed caches (DVC's, a registry's) store files without their suffix."""
    onnx_copy, bundle_copy = tmp_path / "3f9a0c", tmp_path / "77be21"
    shutil.copy(onnx_model, onnx_copy)
    shutil.copy(bundle_path, bundle_copy)
    assert is_onnx(onnx_copy) and not is_onnx(bundle_copy)
    assert load_predictor(onnx_copy).backend == "onnxruntime"
    assert load_predictor(bundle_copy).backend == "pytorch"
    assert json.loads(json.dumps(load_predictor(onnx_copy).classes)) == load_predictor(bundle_copy).classes


def test_the_export_writes_what_serving_needs_beside_the_onnx_file(
    onnx_model: Path, bundle_path: Path, torchless_server: Server
) -> None:
    card = json.loads(onnx_model.with_suffix(".serving.json").read_text())
    bundle = load_predictor(bundle_path)
    assert card["onnx_file"] == onnx_model.name
    assert card["onnx_sha256"] == hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    assert card["classes"] == bundle.classes and card["model_name"] == bundle.model_name
    assert {"input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std"} <= set(card["data_config"])
    assert card["lineage"]["git_commit"] == "test" and card["lineage"]["versions"]["torch"]
    with torchless_server.client() as client:
        served = client.get("/metadata").json()
    assert served["classes"] == card["classes"] and served["lineage"] == card["lineage"]
    assert served["crop_pct"] == card["data_config"]["crop_pct"]
