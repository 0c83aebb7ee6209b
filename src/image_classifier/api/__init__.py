"""The serving API: ``uvicorn --factory image_classifier.api.app:create_app`` with ``MODEL_PATH`` naming a bundle
or an ONNX export. No app is built on import; :func:`create_app` builds one (``image_classifier.api:create_app``
names it too)."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # The app's stack (FastAPI, the model code) is imported only when asked for, not by every ``api`` submodule
    # (the model process, the benchmark's image decoding).
    if name == "create_app":
        from image_classifier.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
