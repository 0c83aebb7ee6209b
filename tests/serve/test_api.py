"""The API over real HTTP: endpoints, prediction shape, hardened input, metrics and the prediction log."""

from __future__ import annotations

import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image

from image_classifier.data.layout import PreparedDataset
from tests.serve.conftest import IMAGE_SIZE, Server, png_bytes, start_server, stop_server


def test_health_and_metadata_describe_the_model(client: httpx.Client, shapes: PreparedDataset) -> None:
    assert client.get("/health").json() == {"status": "ok", "model": "baseline_cnn", "backend": "pytorch"}
    meta = client.get("/metadata").json()
    assert meta["classes"] == shapes.classes
    assert meta["input_size"] == [3, IMAGE_SIZE, IMAGE_SIZE]
    assert meta["lineage"]["data_fingerprint"] == shapes.fingerprint
    assert meta["limits"]["max_files"] == 4


def test_predict_one_image_gives_label_confidence_and_top_k(client: httpx.Client, shapes: PreparedDataset) -> None:
    response = client.post("/predict", files={"file": ("red.png", png_bytes(), "image/png")}, params={"top_k": 4})
    assert response.status_code == 200, response.text
    (prediction,) = response.json()["predictions"]
    assert prediction["filename"] == "red.png"
    assert prediction["label"] in shapes.classes
    probabilities = list(prediction["top_k"].values())
    assert next(iter(prediction["top_k"])) == prediction["label"]
    assert probabilities[0] == pytest.approx(prediction["confidence"], abs=1e-6)
    assert len(probabilities) == 4 and probabilities == sorted(probabilities, reverse=True)


def test_top_k_is_capped_at_the_number_of_classes(client: httpx.Client, shapes: PreparedDataset) -> None:
    response = client.post("/predict", files={"file": ("a.png", png_bytes())}, params={"top_k": 50})
    top_k = response.json()["predictions"][0]["top_k"]
    assert sorted(top_k) == sorted(shapes.classes)
    assert sum(top_k.values()) == pytest.approx(1.0, abs=1e-4)


def test_batch_of_files_keeps_order(client: httpx.Client, shapes: PreparedDataset) -> None:
    images = sorted(shapes.split_dir("test").glob("*/*.jpg"))[:3]
    files = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in images]
    response = client.post("/predict", files=files)
    assert response.status_code == 200, response.text
    assert [p["filename"] for p in response.json()["predictions"]] == [path.name for path in images]


def test_grayscale_and_rgba_images_are_converted_to_rgb(client: httpx.Client) -> None:
    for mode in ("L", "RGBA", "P"):
        buffer = io.BytesIO()
        Image.new(mode, (20, 30)).save(buffer, format="PNG")
        assert client.post("/predict", files={"file": ("x.png", buffer.getvalue())}).status_code == 200


def _truncated_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, format="JPEG")
    return buffer.getvalue()[:400]


def _bomb() -> bytes:
    """A 2000x2000 PNG (4 Mpx, over the server's 1 Mpx limit) that compresses to a few KB."""
    return png_bytes(size=(2000, 2000), colour=(0, 0, 0))


@pytest.mark.parametrize(
    ("files", "status", "words"),
    [
        ({"file": ("empty.png", b"", "image/png")}, 400, "empty"),
        ({"file": ("junk.png", b"not an image at all", "image/png")}, 400, "not a readable image"),
        ({"file": ("cut.jpg", _truncated_jpeg(), "image/jpeg")}, 400, "not a readable image"),
        ({"file": ("notes.txt", png_bytes(), "text/plain")}, 415, "media type"),
        ({"file": ("bomb.png", _bomb(), "image/png")}, 413, "pixel"),
        ({"file": ("big.png", b"\x89PNG" + b"0" * 300_000, "image/png")}, 413, "limit"),
        ([("files", (f"{i}.png", png_bytes(), "image/png")) for i in range(5)], 400, "over the limit of 4"),
        ({"other": ("a.png", png_bytes(), "image/png")}, 422, "missing field"),
    ],
    ids=[
        "zero-byte",
        "undecodable",
        "truncated",
        "wrong-media-type",
        "decompression-bomb",
        "too-large",
        "too-many",
        "missing",
    ],
)
def test_bad_input_gets_a_clear_json_error(client: httpx.Client, files: object, status: int, words: str) -> None:
    response = client.post("/predict", files=files)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert words in response.json()["detail"].lower()


def test_body_over_the_request_limit_is_refused(client: httpx.Client) -> None:
    response = client.post("/predict", files={"file": ("huge.png", b"0" * 1_200_000, "image/png")})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


def test_non_multipart_body_is_unsupported_media_type(client: httpx.Client) -> None:
    response = client.post("/predict", json={"file": "x"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_concurrent_requests_share_forward_passes(
    server: Server, client: httpx.Client, shapes: PreparedDataset
) -> None:
    images = sorted(shapes.split_dir("test").glob("*/*.jpg"))[:16]

    def post(path: Path) -> int:
        with server.client() as http:
            return http.post("/predict", files={"file": (path.name, path.read_bytes(), "image/jpeg")}).status_code

    before = _batch_histogram(client)
    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(post, images)) == [200] * 16
    after = _batch_histogram(client)
    images_served, passes = after[0] - before[0], after[1] - before[1]
    assert images_served == 16
    assert passes < 16  # some requests were batched together


def _batch_histogram(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    total = float(re.search(r"^ic_batch_size_sum (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    count = float(re.search(r"^ic_batch_size_count (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    return total, count


def test_metrics_count_requests_errors_and_predictions(client: httpx.Client) -> None:
    client.post("/predict", files={"file": ("a.png", png_bytes())})
    client.post("/predict", files={"file": ("a.png", b"")})
    text = client.get("/metrics").text
    assert re.search(r'^ic_requests_total\{method="POST",path="/predict",status="200"\} [1-9]', text, re.M)
    assert re.search(r'^ic_errors_total\{path="/predict",status="400"\} [1-9]', text, re.M)
    assert re.search(r'^ic_predictions_total\{label="\w+"\} [1-9]', text, re.M)
    assert "ic_request_latency_seconds_bucket" in text


def test_prediction_log_records_input_statistics_and_outputs(server: Server, client: httpx.Client) -> None:
    client.post("/predict", files={"file": ("logged.png", png_bytes(size=(48, 40)))})
    records = [json.loads(line) for line in server.prediction_log.read_text().splitlines()]
    record = next(r for r in reversed(records) if r["filename"] == "logged.png")
    assert record["input"]["width"] == 48 and record["input"]["height"] == 40
    assert record["input"]["red"] == pytest.approx(200 / 255, abs=1e-3)
    assert record["label"] in record["top_k"] and 0 <= record["confidence"] <= 1


def test_a_dead_model_process_turns_health_and_predict_into_503(bundle_path: Path, tmp_path: Path) -> None:
    server = start_server(bundle_path, tmp_path)
    try:
        children = psutil.Process(server.process.pid).children()
        # the model's child process (the other child is multiprocessing's resource tracker)
        (model,) = [child for child in children if "spawn_main" in " ".join(child.cmdline())]
        model.kill()
        model.wait(timeout=10)
        with server.client() as http:
            deadline = time.monotonic() + 10
            while (health := http.get("/health")).status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            predict = http.post("/predict", files={"file": ("a.png", png_bytes())})
        assert health.status_code == 503 and "model process exited" in health.json()["detail"]
        assert predict.status_code == 503 and "model process exited" in predict.json()["detail"]
    finally:
        stop_server(server)
