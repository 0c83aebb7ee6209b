"""The work one request may ask for: an image's aspect ratio and a request's pixels are bounded before any
decode or resize, image statistics cost the same for any image size, and past the bound on images in progress
a request is answered 503 with Retry-After at once."""

from __future__ import annotations

import asyncio
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from image_classifier.api.admission import Admission, Overloaded
from image_classifier.api.images import ImageLimits, ImageRejected, prepare_request
from image_classifier.image_stats import image_stats
from tests.serve.conftest import Server, png_bytes, start_server, stop_server


def test_a_tiny_upload_with_an_extreme_aspect_ratio_is_refused_before_any_resize(client: httpx.Client) -> None:
    data = png_bytes(size=(65536, 1))
    assert len(data) < 1000  # a few hundred bytes that would ask the resize for millions of pixels
    response = client.post("/predict", files={"file": ("strip.png", data, "image/png")})
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "strip.png: 65536x1 has aspect ratio 6.554e+04, over the limit of 8 (IC_MAX_ASPECT_RATIO)" in detail


def test_images_within_the_aspect_ratio_limit_are_served(client: httpx.Client) -> None:
    response = client.post("/predict", files={"file": ("wide.png", png_bytes(size=(320, 40)), "image/png")})
    assert response.status_code == 200, response.text


def test_the_pixels_of_all_images_of_a_request_are_bounded(client: httpx.Client) -> None:
    one = png_bytes(size=(1000, 1000))
    assert client.post("/predict", files={"file": ("a.png", one)}).status_code == 200
    response = client.post("/predict", files=[("files", (f"{i}.png", one, "image/png")) for i in range(2)])
    assert response.status_code == 413
    assert response.json()["detail"] == (
        "2 images of 2000000 pixels in all is over the 1500000-pixel limit per request (IC_MAX_REQUEST_PIXELS)."
    )


def test_no_image_of_a_refused_request_is_decoded_or_resized() -> None:
    resized: list[tuple[int, int]] = []

    def pixels(image: Image.Image) -> np.ndarray:
        resized.append(image.size)
        return np.zeros((3, 8, 8), dtype=np.uint8)

    limits = ImageLimits(max_bytes=10**6, max_pixels=10**6, max_aspect_ratio=8, max_request_pixels=10**6)
    uploads = [("ok.png", png_bytes(size=(800, 800))), ("big.png", png_bytes(size=(800, 800)))]
    with pytest.raises(ImageRejected, match="IC_MAX_REQUEST_PIXELS") as refused:
        prepare_request(uploads, pixels, limits)
    assert refused.value.status == 413 and resized == []
    with pytest.raises(ImageRejected, match="IC_MAX_ASPECT_RATIO"):
        prepare_request([("ok.png", png_bytes()), ("strip.png", png_bytes(size=(4096, 1)))], pixels, limits)
    assert resized == []
    assert len(prepare_request(uploads[:1], pixels, limits)) == 1 and resized == [(800, 800)]


def test_image_statistics_take_bounded_memory_and_match_the_full_image() -> None:
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(4096, 4096, 3), dtype=np.uint8)
    image = Image.fromarray(array)
    tracemalloc.start()
    try:
        stats = image_stats(image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a float32 copy of the full image would be 4096 * 4096 * 3 * 4 bytes = 201 MB
    assert peak < 8 * 2**20
    assert (stats["width"], stats["height"], stats["aspect"]) == (4096, 4096, 1.0)
    assert stats["red"] == pytest.approx(array[..., 0].mean() / 255, abs=1e-3)
    assert stats["brightness"] == pytest.approx((array @ [0.299, 0.587, 0.114]).mean() / 255, abs=1e-3)


def test_admission_holds_places_and_refuses_past_its_capacity() -> None:
    admission = Admission(capacity=4, retry_after_s=2)
    with admission.admit(3):
        refused = r"limit of 4 images in progress \(IC_MAX_QUEUE\); retry after 2 s"
        with pytest.raises(Overloaded, match=refused), admission.admit(2):
            pass
        with admission.admit(1):
            assert admission.in_progress == 4
    assert admission.in_progress == 0
    with admission.admit(9):  # larger than the capacity, but alone: served
        assert admission.in_progress == 9


@pytest.fixture(scope="module")
def small_queue_server(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API admitting one image at a time, with a batch wait that keeps each image in progress a while."""
    running = start_server(
        bundle_path,
        tmp_path_factory.mktemp("small-queue"),
        IC_MAX_QUEUE="1",
        IC_RETRY_AFTER_S="3",
        IC_MAX_WAIT_MS="50",
        IC_PREDICTION_LOG="",
    )
    yield running
    stop_server(running)


def test_past_the_queue_limit_requests_are_answered_503_with_retry_after(small_queue_server: Server) -> None:
    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=small_queue_server.url, timeout=30) as http:
            posts = [http.post("/predict", files={"file": (f"{i}.png", png_bytes())}) for i in range(24)]
            return await asyncio.gather(*posts)

    responses = asyncio.run(burst())
    statuses = sorted({response.status_code for response in responses})
    assert statuses == [200, 503], statuses
    shed = [response for response in responses if response.status_code == 503]
    assert all(response.headers["retry-after"] == "3" for response in shed)
    assert shed[0].json()["detail"] == (
        "The server is at its limit of 1 images in progress (IC_MAX_QUEUE); retry after 3 s."
    )
    with httpx.Client(base_url=small_queue_server.url, timeout=30) as http:
        assert http.get("/health").status_code == 200  # shedding load is not being unhealthy
        assert http.post("/predict", files={"file": ("after.png", png_bytes())}).status_code == 200
        metadata = http.get("/metadata").json()
    assert metadata["limits"]["max_queue"] == 1
