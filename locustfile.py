"""Locust load test for the serving API: ``invoke loadtest --host http://127.0.0.1:8000``.

Users post images to ``/predict`` (mostly one at a time, sometimes a small batch) and now and then read
``/health`` and ``/metadata``. Images come from ``$LOCUST_IMAGES`` (a folder) or are generated.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

from locust import HttpUser, between, task
from PIL import Image

SUFFIXES = {".jpg", ".jpeg", ".png"}


def load_images() -> list[tuple[str, bytes]]:
    folder = os.environ.get("LOCUST_IMAGES", "")
    if folder:
        paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in SUFFIXES)[:256]
        if paths:
            return [(p.name, p.read_bytes()) for p in paths]
    rng = random.Random(0)
    images = []
    for i in range(32):
        buffer = io.BytesIO()
        colour = tuple(rng.randrange(256) for _ in range(3))
        Image.new("RGB", (64, 64), colour).save(buffer, format="JPEG")  # type: ignore[arg-type]
        images.append((f"generated-{i}.jpg", buffer.getvalue()))
    return images


IMAGES = load_images()


class ApiUser(HttpUser):
    wait_time = between(0.0, 0.05)

    @task(10)
    def predict_one(self) -> None:
        name, data = random.choice(IMAGES)
        self.client.post("/predict", files={"file": (name, data, "image/jpeg")}, name="/predict (1 image)")

    @task(2)
    def predict_batch(self) -> None:
        files = [("files", (name, data, "image/jpeg")) for name, data in random.sample(IMAGES, min(4, len(IMAGES)))]
        self.client.post("/predict", files=files, name="/predict (4 images)")

    @task(1)
    def metadata(self) -> None:
        self.client.get("/metadata")

    @task(1)
    def health(self) -> None:
        self.client.get("/health")
