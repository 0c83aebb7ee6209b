"""Prometheus metrics, and the prediction log (JSON lines of input statistics and outputs)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The service's metrics, in a registry of their own, with the server process's CPU, memory and open files."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "ic_requests", "HTTP requests served.", ["method", "path", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "ic_request_latency_seconds",
            "Request latency.",
            ["method", "path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "ic_errors", "Responses with a 4xx or 5xx status.", ["path", "status"], registry=self.registry
        )
        self.predictions = Counter(
            "ic_predictions", "Predictions by predicted class.", ["label"], registry=self.registry
        )
        self.batch_size = Histogram(
            "ic_batch_size", "Images per forward pass.", buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=self.registry
        )
        self.inference = Histogram(
            "ic_inference_seconds", "Time of one forward pass.", buckets=LATENCY_BUCKETS, registry=self.registry
        )

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(method, path).observe(seconds)
        if status >= 400:
            self.errors.labels(path, str(status)).inc()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.inference.observe(seconds)


class PredictionLog:
    """Appends one JSON object per served image: time, model, input statistics, prediction."""

    def __init__(self, path: str) -> None:
        self.logger: logging.Logger | None = None
        if not path:
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.logger = logging.getLogger(f"image_classifier.predictions.{path}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        if not self.logger.handlers:
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)

    @property
    def enabled(self) -> bool:
        return self.logger is not None

    def write(self, model: str, filename: str, stats: dict[str, float], prediction: dict[str, Any]) -> None:
        if self.logger is not None:
            record = {"time": time.time(), "model": model, "filename": filename, "input": stats, **prediction}
            self.logger.info(json.dumps(record))

    def close(self) -> None:
        if self.logger is not None:
            for handler in list(self.logger.handlers):
                handler.close()
                self.logger.removeHandler(handler)
