"""Where the served model comes from: ``MODEL_PATH``, or ``MODEL_URI`` fetched once at start into a local cache.

``MODEL_URI`` is ``file://PATH``, ``https://...`` (``http://`` too), ``gs://BUCKET/OBJECT`` (the ``gcs`` extra) or a
registry reference (``gto:NAME#prod``, ``NAME@v1.2.3``; see :mod:`image_classifier.registry`). The fetched file is
checked against ``MODEL_SHA256`` (a registry reference brings its own checksum) before it is loaded. Every failure
is a :class:`ModelSourceError`: one line, raised within the fetch timeout.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from image_classifier.api.settings import ServeSettings
from image_classifier.atomic import atomic_path
from image_classifier.errors import UserError
from image_classifier.hashing import CHUNK, sha256_file
from image_classifier.redact import redact

REGISTRY_PREFIX = "gto:"
# A GTO reference without the prefix: NAME@vX.Y.Z, NAME@latest, NAME#STAGE (NAME as GTO spells artifact names).
REGISTRY_REFERENCE = re.compile(r"^[a-z0-9][a-z0-9/-]*(@(v\d+\.\d+\.\d+|latest|greatest)|#[a-z0-9-]+)(#\d+)?$")


class ModelSourceError(UserError):
    """A model URI that cannot be fetched, or a fetched file that is not the one expected. Its message never
    holds a URI's userinfo or query string (:func:`~image_classifier.redact.redact`)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


def local_model(settings: ServeSettings) -> Path:
    """The local model file to serve: ``MODEL_URI`` fetched into the cache, else ``MODEL_PATH``; either is
    checked against ``MODEL_SHA256`` when it is set."""
    source = settings.require_model()
    if not settings.model_uri:
        path = Path(source)
        if settings.model_sha256 and path.is_file():
            verify(path, settings.model_sha256, source)
        return path
    return fetch(
        source,
        cache_dir(settings.model_cache),
        sha256=settings.model_sha256,
        timeout=settings.model_fetch_timeout,
        registry=settings.model_registry,
    )


def cache_dir(configured: str = "") -> Path:
    """``IC_MODEL_CACHE``, else ``$XDG_CACHE_HOME/image-classifier/models`` (``~/.cache`` by default)."""
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "image-classifier" / "models"


def fetch(uri: str, cache: Path, *, sha256: str = "", timeout: float = 60.0, registry: str = ".") -> Path:
    """The local file for ``uri``: downloaded once into ``cache`` (reused while it matches ``sha256``)."""
    if uri.startswith(REGISTRY_PREFIX) or REGISTRY_REFERENCE.match(uri):
        return _from_registry(uri.removeprefix(REGISTRY_PREFIX), cache, sha256, registry)
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme == "file":
        return _local_file(parts, uri, sha256)
    downloaders: dict[str, Callable[[str, IO[bytes], float], None]] = {
        "http": _download_http,
        "https": _download_http,
        "gs": _download_gcs,
    }
    if parts.scheme not in downloaders:
        raise ModelSourceError(
            f"MODEL_URI={uri!r} is not a file://, https:// or gs:// URI, nor a registry reference "
            "(gto:NAME#prod, NAME@v1.2.3)."
        )
    target = cache / cache_name(uri)
    if sha256 and target.is_file() and sha256_file(target) == sha256.lower():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:
        with open(partial, "wb") as handle:
            downloaders[parts.scheme](uri, handle, timeout)
        if sha256:
            verify(partial, sha256, uri)
    return target


def cache_name(uri: str) -> str:
    """A file name for ``uri`` in the cache: unique to the URI, ending as its path does (``.onnx`` stays ONNX)."""
    tail = Path(urllib.parse.urlsplit(uri).path).name
    tail = re.sub(r"[^A-Za-z0-9._-]", "_", tail) or "model"
    return f"{hashlib.sha256(uri.encode()).hexdigest()[:16]}-{tail}"


def verify(path: Path, sha256: str, source: str) -> None:
    """Raise unless ``path``'s SHA-256 is ``sha256``."""
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise ModelSourceError(f"{source} has SHA-256 {actual}, not the expected {sha256.lower()} (MODEL_SHA256).")


def _local_file(parts: urllib.parse.SplitResult, uri: str, sha256: str) -> Path:
    if parts.netloc not in ("", "localhost"):
        raise ModelSourceError(f"MODEL_URI={uri!r}: a file:// URI names a local path (file:///abs/path).")
    path = Path(urllib.request.url2pathname(parts.path))
    if not path.is_file():
        raise ModelSourceError(f"Model not found: {path} (MODEL_URI={uri}).")
    if sha256:
        verify(path, sha256, uri)
    return path


def _download_http(uri: str, handle: IO[bytes], timeout: float) -> None:
    """Stream ``uri`` into ``handle``; a short body (the server closed early) is an error, not a model."""
    request = urllib.request.Request(uri, headers={"User-Agent": "image-classifier"})
    received, expected = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            while chunk := response.read(CHUNK):
                handle.write(chunk)
                received += len(chunk)
    except urllib.error.HTTPError as error:
        raise ModelSourceError(f"Cannot fetch {uri}: HTTP {error.code} {error.reason}.") from None
    except urllib.error.URLError as error:
        raise ModelSourceError(f"Cannot fetch {uri}: {_reason(error.reason, timeout)}.") from None
    except http.client.IncompleteRead as error:
        received += len(error.partial)
        expected = received + (error.expected or 1) if expected is None else expected
    except (OSError, http.client.HTTPException) as error:
        raise ModelSourceError(f"Cannot fetch {uri}: {_reason(error, timeout)}.") from None
    if expected is not None and received != expected:
        raise ModelSourceError(f"Cannot fetch {uri}: the connection closed after {received} of {expected} bytes.")


def _reason(error: object, timeout: float) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s (IC_MODEL_FETCH_TIMEOUT)"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text


def _download_gcs(uri: str, handle: IO[bytes], timeout: float) -> None:
    """Download ``gs://BUCKET/OBJECT`` with the environment's Google credentials (the ``gcs`` extra)."""
    try:
        from google.cloud import storage
        from google.cloud.storage.retry import DEFAULT_RETRY
    except ImportError:
        raise ModelSourceError(
            f"Cannot fetch {uri}: gs:// needs google-cloud-storage: pip install 'image-classifier[gcs]'."
        ) from None
    parts = urllib.parse.urlsplit(uri)
    name = parts.path.lstrip("/")
    if not parts.netloc or not name:
        raise ModelSourceError(f"MODEL_URI={uri!r} is not gs://BUCKET/OBJECT.")
    try:
        client = storage.Client()
        blob = client.bucket(parts.netloc).blob(name)
        blob.download_to_file(handle, timeout=timeout, retry=DEFAULT_RETRY.with_timeout(timeout))
    except Exception as error:  # google-auth, google-api-core and requests each raise their own types
        raise ModelSourceError(f"Cannot fetch {uri}: {_reason(error, timeout)}.") from None


def _from_registry(reference: str, cache: Path, sha256: str, registry: str) -> Path:
    """The bundle a registry reference names, fetched through DVC and checked against the registry's checksum."""
    try:  # the registry's modules, DVC and GTO are imported for a registry reference alone
        from image_classifier.registry.versions import fetch as fetch_version
        from image_classifier.registry.versions import resolve

        path = fetch_version(resolve(reference, repo=registry), cache / "registry", repo=registry)
    except ImportError as error:  # dvc and gto come with the project's dependencies, not the slim serving package
        raise ModelSourceError(f"Registry references need dvc and gto: {error}.") from None
    if sha256:
        verify(path, sha256, f"gto:{reference}")
    return path
