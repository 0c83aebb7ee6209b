"""MODEL_URI: the model fetched once at start from file://, http(s)://, gs:// or the registry, checked, then served.

Real HTTP servers on 127.0.0.1 serve a real bundle, answer 404, close the connection halfway through the body or
never answer; ``gs://`` goes through google-cloud-storage to a local server standing in for the GCS JSON API.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from image_classifier.api.__main__ import main as serve_main
from image_classifier.api.model_source import ModelSourceError, fetch
from image_classifier.api.settings import ServeSettings
from image_classifier.checkpoint import load_bundle
from image_classifier.errors import ConfigError
from tests.serve.conftest import free_port, start_server, stop_server

Handler = Callable[[BaseHTTPRequestHandler], None]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def served(http_server: tuple[str, Path], bundle_path: Path) -> tuple[str, Path]:
    """``(URL of the bundle on a real HTTP server, the served copy)``."""
    base, directory = http_server
    shutil.copy(bundle_path, directory / "best.pt")
    return f"{base}/best.pt", directory / "best.pt"


@pytest.fixture
def serve_with() -> Iterator[Callable[[Handler], str]]:
    """Start an HTTP server on 127.0.0.1 whose GET is ``handler``; its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(handler: Handler) -> str:
        request_handler = type("Handler", (BaseHTTPRequestHandler,), {"do_GET": handler, "log_message": quiet})
        server = ThreadingHTTPServer(("127.0.0.1", 0), request_handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def quiet(self: BaseHTTPRequestHandler, format: str, *args: Any) -> None:
    pass


def test_an_http_uri_is_fetched_once_into_the_cache_and_checked(served: tuple[str, Path], tmp_path: Path) -> None:
    url, original = served
    cache = tmp_path / "cache"
    path = fetch(url, cache, sha256=sha256(original))
    assert path.parent == cache and path.name.endswith("-best.pt")
    assert path.read_bytes() == original.read_bytes()
    assert load_bundle(path).model_name == "baseline_cnn"
    original.unlink()  # the server has it no more: a checksum that matches the cached copy needs no fetch
    assert fetch(url, cache, sha256=sha256(path)) == path
    with pytest.raises(ModelSourceError, match="HTTP 404"):
        fetch(url, cache)  # without a checksum, each start fetches again


def test_a_404_is_a_one_line_error(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    with pytest.raises(ModelSourceError) as error:
        fetch(url.replace("best.pt", "gone.pt"), tmp_path)
    assert str(error.value) == f"Cannot fetch {url.replace('best.pt', 'gone.pt')}: HTTP 404 File not found."


def test_a_connection_closed_halfway_through_the_body_keeps_nothing(
    serve_with: Callable[[Handler], str], bundle_path: Path, tmp_path: Path
) -> None:
    body = bundle_path.read_bytes()

    def half(self: BaseHTTPRequestHandler) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True

    url = serve_with(half) + "/best.pt"
    with pytest.raises(ModelSourceError, match=rf"closed after {len(body) // 2} of {len(body)} bytes"):
        fetch(url, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no partial file to load next time


def test_a_wrong_checksum_is_refused_and_not_cached(served: tuple[str, Path], tmp_path: Path) -> None:
    url, original = served
    with pytest.raises(ModelSourceError, match=f"has SHA-256 {sha256(original)}, not the expected 0{{64}}"):
        fetch(url, tmp_path / "cache", sha256="0" * 64)
    assert list((tmp_path / "cache").iterdir()) == []


def test_an_unreachable_or_silent_server_fails_within_the_timeout(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match="Connection refused"):
        fetch(f"http://127.0.0.1:{free_port()}/best.pt", tmp_path, timeout=5)
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with pytest.raises(ModelSourceError, match=r"no answer within 0\.5 s \(IC_MODEL_FETCH_TIMEOUT\)"):
            fetch(f"http://127.0.0.1:{silent.getsockname()[1]}/best.pt", tmp_path, timeout=0.5)


def test_a_file_uri_is_the_local_file_checked(bundle_path: Path, tmp_path: Path) -> None:
    assert fetch(bundle_path.as_uri(), tmp_path, sha256=sha256(bundle_path)) == bundle_path
    with pytest.raises(ModelSourceError, match="Model not found"):
        fetch((tmp_path / "gone.pt").as_uri(), tmp_path)
    with pytest.raises(ModelSourceError, match="not the expected"):
        fetch(bundle_path.as_uri(), tmp_path, sha256="f" * 64)


FETCH_A_FILE = """
import json, sys
from pathlib import Path
from image_classifier.api.model_source import fetch
fetch(Path(sys.argv[1]).as_uri(), Path(sys.argv[2]), sha256=sys.argv[3])
print(json.dumps(sorted(sys.modules)))
"""


def test_a_file_uri_is_served_without_the_registry_dvc_gto_or_hydra(bundle_path: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-c", FETCH_A_FILE, str(bundle_path), str(tmp_path), sha256(bundle_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    imported = {name.split(".")[0] for name in json.loads(done.stdout)} | set(json.loads(done.stdout))
    assert not {"image_classifier.registry", "dvc", "gto", "hydra", "omegaconf", "torch"} & imported


def test_an_unknown_scheme_names_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"is not a file://, https:// or gs:// URI, nor a registry reference"):
        fetch("ftp://example.com/best.pt", tmp_path)


@pytest.fixture
def gcs_emulator(
    serve_with: Callable[[Handler], str], bundle_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A local stand-in for the GCS JSON API holding ``gs://models/runs/best.pt`` (``STORAGE_EMULATOR_HOST``)."""
    pytest.importorskip("google.cloud.storage", reason="the gcs extra is not installed (pip install -e '.[gcs]')")
    body = bundle_path.read_bytes()

    def gcs(self: BaseHTTPRequestHandler) -> None:
        found = self.path.startswith("/download/storage/v1/b/models/o/runs%2Fbest.pt")
        data = body if found else json.dumps({"error": {"code": 404, "message": "No such object"}}).encode()
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "application/octet-stream" if found else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", serve_with(gcs))
    yield


@pytest.mark.usefixtures("gcs_emulator")
def test_a_gs_uri_is_fetched_with_google_cloud_storage(bundle_path: Path, tmp_path: Path) -> None:
    path = fetch("gs://models/runs/best.pt", tmp_path, sha256=sha256(bundle_path), timeout=5)
    assert path.read_bytes() == bundle_path.read_bytes()
    with pytest.raises(ModelSourceError, match=r"^Cannot fetch gs://models/runs/gone\.pt: .*404"):
        fetch("gs://models/runs/gone.pt", tmp_path, timeout=5)


# --- the server ------------------------------------------------------------------------------------


CHECKSUM_ERROR = r"^error: http://\S+/best\.pt has SHA-256 [0-9a-f]{64}, not the expected 0{64} \(MODEL_SHA256\)\.$"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", r"^error: Cannot fetch http://127\.0\.0\.1:\d+/gone\.pt: HTTP 404 File not found\.$"),
        ("checksum", CHECKSUM_ERROR),
        ("not a bundle", r"^error: Cannot read checkpoint .*notes\.pt: not a torch checkpoint"),
    ],
)
def test_serving_a_bad_model_uri_exits_at_start_with_one_line(
    served: tuple[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
    message: str,
) -> None:
    url, original = served
    (original.parent / "notes.pt").write_text("not a model")
    env = {
        "missing": {"MODEL_URI": url.replace("best.pt", "gone.pt")},
        "checksum": {"MODEL_URI": url, "MODEL_SHA256": "0" * 64},
        "not a bundle": {"MODEL_URI": url.replace("best.pt", "notes.pt")},
    }[case]
    for name, value in {**env, "IC_MODEL_CACHE": str(tmp_path / "cache"), "IC_MODEL_PROCESS": "false"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--port", str(free_port())])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # one line, no traceback
    assert re.match(message, line), line


def test_python_m_api_prints_only_the_error_line(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    env = {**os.environ, "MODEL_URI": url.replace("best.pt", "gone.pt"), "IC_MODEL_CACHE": str(tmp_path)}
    command = [sys.executable, "-m", "image_classifier.api", "--port", str(free_port())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: Cannot fetch {env['MODEL_URI']}: HTTP 404 File not found."]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MODEL_SHA256", "abc", "MODEL_SHA256='abc' is not a SHA-256 digest (64 hex digits)."),
        ("IC_MODEL_FETCH_TIMEOUT", "0", "IC_MODEL_FETCH_TIMEOUT='0' must be more than 0."),
    ],
)
def test_bad_model_source_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        ServeSettings.from_env()
    assert str(error.value) == message


def test_model_uri_wins_over_model_path_and_model_over_both(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PATH", "/app/models/model.pt")  # the image's default
    monkeypatch.setenv("MODEL_URI", "gto:image-classifier#prod")
    assert ServeSettings.from_env().require_model() == "gto:image-classifier#prod"
    assert ServeSettings.from_env(model_path="given.pt", model_uri="").require_model() == "given.pt"


def test_uvicorn_serves_the_model_fetched_from_a_uri(served: tuple[str, Path], tmp_path: Path) -> None:
    url, original = served
    env = {"MODEL_URI": url, "MODEL_SHA256": sha256(original), "IC_MODEL_CACHE": str(tmp_path / "cache")}
    server = start_server(tmp_path / "unused.pt", tmp_path, **env)  # MODEL_URI wins over MODEL_PATH
    try:
        with server.client() as client:
            assert client.get("/health").json()["model"] == "baseline_cnn"
            assert client.get("/metadata").json()["lineage"]["git_commit"] == "test"
    finally:
        stop_server(server)
    assert [path.name.endswith("-best.pt") for path in (tmp_path / "cache").iterdir()] == [True]


def test_a_started_server_answers_503_with_the_reason_when_the_model_uri_fails(
    served: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = served
    gone = url.replace("best.pt", "gone.pt")
    port = free_port()
    environment = {**os.environ, "MODEL_URI": gone, "IC_MODEL_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "uvicorn", "--factory", "image_classifier.api.app:create_app", "--port", str(port)]
    with open(tmp_path / "uvicorn.log", "wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = wait_for_answer(f"http://127.0.0.1:{port}/health", process)
        assert health.status_code == 503
        assert health.json() == {"detail": f"No model: Cannot fetch {gone}: HTTP 404 File not found."}
        predict = httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": ("a.png", b"x", "image/png")})
        assert predict.status_code == 503
    finally:
        process.terminate()
        process.wait(timeout=30)
    log_text = (tmp_path / "uvicorn.log").read_text()
    assert f"error: Cannot fetch {gone}: HTTP 404 File not found." in log_text and "Traceback" not in log_text


def wait_for_answer(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"no answer from {url}")
