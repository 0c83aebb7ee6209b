"""What the serving benchmarks serve and send: a random-weight bundle and pre-encoded JPEG uploads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from image_classifier.checkpoint import save_bundle
from image_classifier.untrained import untrained_bundle


def random_bundle(model_name: str, image_size: int, path: Path, num_classes: int = 10) -> Path:
    """A bundle with seeded random weights: throughput does not depend on what the weights learned."""
    classes = [f"class_{i}" for i in range(num_classes)]
    return save_bundle(path, untrained_bundle(model_name, classes, image_size, lineage={"git_commit": "benchmark"}))


def sample_images(count: int, size: int, seed: int = 0) -> list[bytes]:
    """JPEG-encoded noise images of ``size`` pixels (decoding cost like real small photos)."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def multipart(image: bytes, boundary: str = "benchmark-boundary") -> tuple[bytes, str]:
    """One pre-encoded multipart body, so the load generator spends little CPU per request."""
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="image.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"
