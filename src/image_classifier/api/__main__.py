"""``python -m image_classifier.api --model PATH | --model-uri URI [--port N]``: load the model, then serve it."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from image_classifier.api.app import create_app, open_model
from image_classifier.api.settings import ServeSettings
from image_classifier.errors import report_user_errors


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.api", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="checkpoint bundle (best.pt) or exported .onnx (default: $MODEL_PATH)")
    source.add_argument(
        "--model-uri", help="file://, https://, gs:// or a registry reference, e.g. gto:NAME#prod (default: $MODEL_URI)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 8000)")
    parser.add_argument("--max-batch", type=int, help="most images per forward pass (1 turns micro-batching off)")
    parser.add_argument("--max-wait-ms", type=float, help="how long a request may wait for others to batch with")
    parser.add_argument("--prediction-log", help="append a JSON line per prediction to this file")
    args = parser.parse_args(argv)
    settings = ServeSettings.from_env(
        model_path=args.model,
        model_uri="" if args.model else args.model_uri,  # --model wins over $MODEL_URI
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        prediction_log=args.prediction_log,
    )
    opened = open_model(settings)  # fetched and loaded before serving, so that a bad model is a one-line error
    port = settings.port if args.port is None else args.port
    uvicorn.run(create_app(settings, opened), host=args.host, port=port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
