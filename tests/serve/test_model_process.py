"""The model in a child process answers like the in-process predictor, in order, from several threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from image_classifier.api.model_process import ModelProcess
from image_classifier.api.predictors import load_predictor
from image_classifier.errors import CheckpointError
from tests.serve.conftest import IMAGE_SIZE


def test_model_process_answers_as_the_in_process_predictor_from_several_threads(bundle_path: Path) -> None:
    local = load_predictor(bundle_path)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((n, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32) for n in (1, 3, 2, 5, 4, 1)]
    remote = load_predictor(bundle_path, own_process=True)
    try:
        assert isinstance(remote, ModelProcess)
        assert (remote.classes, remote.data_config, remote.backend) == (local.classes, local.data_config, "pytorch")
        with ThreadPoolExecutor(2) as pool:  # two callers pipeline their batches through one child
            answers = list(pool.map(remote, batches))
        for batch, answer in zip(batches, answers, strict=True):
            np.testing.assert_allclose(answer, local(batch), rtol=1e-5, atol=1e-6)
        with pytest.raises(RuntimeError, match="RuntimeError"):
            remote(np.zeros((1, 5), dtype=np.float32))  # a bad batch fails itself, not the process
        np.testing.assert_allclose(remote(batches[0]), local(batches[0]), rtol=1e-5, atol=1e-6)
    finally:
        remote.close()


def test_a_model_that_cannot_load_is_a_one_line_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as error:
        ModelProcess(broken)
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="Model not found"):
        ModelProcess(tmp_path / "missing.pt")
