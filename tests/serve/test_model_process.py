"""The model in a child process batches what it is sent and answers like the in-process predictor."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from image_classifier.api.batching import ModelUnavailable
from image_classifier.api.model_process import ModelProcess
from image_classifier.api.predictors import load_predictor
from image_classifier.errors import CheckpointError
from image_classifier.preprocess import BatchedEvalTransform
from tests.serve.conftest import IMAGE_SIZE


def test_model_process_batches_and_answers_as_the_in_process_predictor(bundle_path: Path) -> None:
    local = load_predictor(bundle_path)
    preprocess = BatchedEvalTransform(local.data_config)
    pixels = np.random.default_rng(0).integers(0, 256, (12, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    remote = ModelProcess(bundle_path, max_batch=4)
    sizes: list[int] = []
    remote.observe = lambda size, seconds: sizes.append(size)
    try:
        assert (remote.classes, remote.data_config, remote.backend) == (local.classes, local.data_config, "pytorch")
        np.testing.assert_allclose(remote.predict(pixels), local(preprocess.batch(pixels)), rtol=1e-5, atol=1e-6)
        assert sum(sizes) == 12 and max(sizes) <= 4 and len(sizes) < 12  # sent one by one, run in batches
        bad = remote.submit(np.zeros((1, 5), dtype=np.uint8))  # a bad input fails itself, not the process
        with pytest.raises(RuntimeError):
            bad.result(timeout=60)
        one = pixels[:1]
        np.testing.assert_allclose(remote.predict(one), local(preprocess.batch(one)), rtol=1e-5, atol=1e-6)
    finally:
        remote.stop()
    assert remote.unavailable is not None
    with pytest.raises(ModelUnavailable):
        remote.submit(pixels[0]).result(timeout=1)


def test_a_dead_model_process_fails_requests_with_a_clear_error(bundle_path: Path) -> None:
    remote = ModelProcess(bundle_path)
    try:
        os.kill(remote._process.pid, signal.SIGKILL)  # type: ignore[arg-type]
        remote._process.join(timeout=10)
        future = remote.submit(np.zeros((3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8))
        with pytest.raises(ModelUnavailable, match="model process exited"):
            future.result(timeout=10)
    finally:
        remote.stop()


def test_a_model_that_cannot_load_is_a_one_line_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as error:
        ModelProcess(broken)
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="Model not found"):
        ModelProcess(tmp_path / "missing.pt")
