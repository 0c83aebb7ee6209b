"""Fuzzing: the API's own OpenAPI spec (schemathesis) and arbitrary bytes (hypothesis) never cause a 5xx."""

from __future__ import annotations

import io

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import positive_data_acceptance

from image_classifier.api.images import ImageRejected, decode_image
from tests.serve.conftest import Server


@pytest.fixture(scope="module")
def api_schema(server: Server) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_fuzz_never_gets_a_server_error(case: schemathesis.Case) -> None:
    """Positive and negative cases from the spec: no 5xx, statuses and bodies as documented.

    ``positive_data_acceptance`` is left out: a schema cannot say which bytes are a decodable image, so
    schema-valid random bytes are rightly answered 400.
    """
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@st.composite
def mangled_images(draw: st.DrawFn) -> bytes:
    """Valid PNGs with a random slice cut out, bytes flipped, or a prefix kept: realistic corruption."""
    data = bytearray(_png(draw(st.integers(1, 64)), draw(st.integers(1, 64))))
    action = draw(st.sampled_from(["truncate", "flip", "splice"]))
    if action == "truncate":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if action == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)
    start = draw(st.integers(0, len(data)))
    return bytes(data[:start] + draw(st.binary(max_size=64)) + data[start:])


@given(st.one_of(st.binary(max_size=512), mangled_images()))
@settings(max_examples=200, deadline=None)
def test_decoding_any_bytes_gives_an_image_or_a_rejection(data: bytes) -> None:
    try:
        image = decode_image(data, "fuzz", max_bytes=1_000_000, max_pixels=1_000_000)
    except ImageRejected as rejection:
        assert rejection.status in (400, 413)
    else:
        assert image.mode == "RGB"


@given(data=st.one_of(st.binary(max_size=256), mangled_images()), content_type=st.sampled_from(["image/png", None]))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_uploading_any_bytes_never_gets_a_server_error(server: Server, data: bytes, content_type: str | None) -> None:
    part = ("upload.png", data, content_type) if content_type else ("upload.png", data)
    response = httpx.post(f"{server.url}/predict", files={"file": part}, timeout=30)
    assert response.status_code in (200, 400, 413), response.text
    assert "detail" in response.json() or "predictions" in response.json()
