"""The serving API: ``uvicorn image_classifier.api:app`` with ``MODEL_PATH`` naming a bundle or an ONNX export."""

from image_classifier.api.app import create_app

app = create_app()

__all__ = ["app", "create_app"]
