"""Secrets in a model URI (its userinfo, a signed URL's query string) never leave the process: not in the
one-line error, the server's log, the 503 bodies of /health and /predict, nor any log record."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from image_classifier.api.model_source import ModelSourceError, fetch
from image_classifier.redact import install_log_redaction, redact
from tests.serve.conftest import free_port
from tests.serve.test_model_uri import wait_for_answer

# Port 1 on the loopback: nothing listens, so each fetch fails at once with a message naming the URI.
WITH_USERINFO = "https://u:SECRET@127.0.0.1:1/m.pt"
SIGNED = "https://127.0.0.1:1/bucket/m.pt?X-Goog-Signature=SECRET&X-Goog-Credential=SECRET"
URIS = {WITH_USERINFO: "https://***@127.0.0.1:1/m.pt", SIGNED: "https://127.0.0.1:1/bucket/m.pt?***"}


@pytest.mark.parametrize(("uri", "shown"), URIS.items())
def test_redact_keeps_scheme_host_and_path_and_hides_userinfo_and_query(uri: str, shown: str) -> None:
    assert (
        redact(f"Cannot fetch {uri}: refused; MODEL_URI={uri!r}.")
        == f"Cannot fetch {shown}: refused; MODEL_URI='{shown}'."
    )
    assert redact("gs://bucket/models/m.pt and /predict?top_k=3 stay as they are") == (
        "gs://bucket/models/m.pt and /predict?top_k=3 stay as they are"
    )


@pytest.mark.parametrize(("uri", "shown"), URIS.items())
def test_a_fetch_error_names_the_uri_without_its_secrets(tmp_path: Path, uri: str, shown: str) -> None:
    with pytest.raises(ModelSourceError) as error:
        fetch(uri, tmp_path, timeout=5)
    assert "SECRET" not in str(error.value) and str(error.value).startswith(f"Cannot fetch {shown}: ")


@pytest.mark.parametrize("uri", URIS)
def test_the_command_line_error_hides_the_secrets(tmp_path: Path, uri: str) -> None:
    env = {**os.environ, "MODEL_URI": uri, "IC_MODEL_CACHE": str(tmp_path), "IC_MODEL_FETCH_TIMEOUT": "5"}
    command = [sys.executable, "-m", "image_classifier.api", "--port", str(free_port())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert "SECRET" not in done.stdout + done.stderr
    assert done.stderr.startswith(f"error: Cannot fetch {URIS[uri]}: ")


@pytest.mark.parametrize("uri", URIS)
def test_a_started_server_shows_the_reason_without_the_secrets(tmp_path: Path, uri: str) -> None:
    port = free_port()
    environment = {**os.environ, "MODEL_URI": uri, "IC_MODEL_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "uvicorn", "--factory", "image_classifier.api.app:create_app", "--port", str(port)]
    with open(tmp_path / "uvicorn.log", "wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = wait_for_answer(f"http://127.0.0.1:{port}/health", process)
        predict = httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": ("a.png", b"x", "image/png")})
        page = httpx.get(f"http://127.0.0.1:{port}/")
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert health.status_code == 503 and predict.status_code == 503
    assert health.json()["detail"].startswith(f"No model: Cannot fetch {URIS[uri]}: ")
    log_text = (tmp_path / "uvicorn.log").read_text()
    assert f"error: Cannot fetch {URIS[uri]}: " in log_text
    for text in (health.text, predict.text, page.text, log_text):
        assert "SECRET" not in text


def test_log_records_are_redacted_whichever_logger_writes_them(caplog: pytest.LogCaptureFixture) -> None:
    previous = logging.getLogRecordFactory()
    install_log_redaction()
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("some.library").info("GET %s", SIGNED)
            try:
                raise OSError(f"cannot open {WITH_USERINFO}")
            except OSError:
                logging.getLogger("another").exception("failed")
    finally:
        logging.setLogRecordFactory(previous)
    assert caplog.messages[0] == f"GET {URIS[SIGNED]}"
    assert "SECRET" not in caplog.text and URIS[WITH_USERINFO] in caplog.text
