"""ONNX export: verified against PyTorch, self-describing, and served with the same predictions."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from image_classifier.data.layout import PreparedDataset
from image_classifier.export import export, main
from tests.serve.conftest import IMAGE_SIZE, LIMITS, Server, start_server, stop_server


@pytest.fixture(scope="module")
def onnx_path(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    report = export(bundle_path, path)
    assert report.max_abs_diff < 1e-4
    return path


def test_export_has_dynamic_batch_and_metadata(onnx_path: Path, shapes: PreparedDataset) -> None:
    metadata = {entry.key: entry.value for entry in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(metadata["classes"]) == shapes.classes
    assert json.loads(metadata["input_size"]) == [3, IMAGE_SIZE, IMAGE_SIZE]
    assert len(json.loads(metadata["mean"])) == len(json.loads(metadata["std"])) == 3
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        (logits,) = session.run(None, {"input": np.zeros((batch, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)})
        assert logits.shape == (batch, len(shapes.classes))
    report = json.loads(onnx_path.with_suffix(".export.json").read_text())
    assert report["max_abs_diff"] < 1e-4


def test_quantized_export_reports_its_accuracy_change(
    bundle_path: Path, shapes: PreparedDataset, tmp_path: Path
) -> None:
    report = export(bundle_path, tmp_path / "model.onnx", quantized=True, data=shapes.split_dir("test"))
    assert Path(report.quantized_path or "").is_file()
    assert report.images == 2 * len(shapes.classes)
    assert report.accuracy_change == pytest.approx(report.quantized_accuracy - report.float_accuracy)  # type: ignore[operator]


def test_export_cli_reports_a_missing_checkpoint_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "none.pt")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: Checkpoint not found: {tmp_path / 'none.pt'}"]


@pytest.fixture(scope="module")
def onnx_server(onnx_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(onnx_path, tmp_path_factory.mktemp("onnx-server"), **LIMITS)
    yield running
    stop_server(running)


def test_onnx_model_serves_the_same_predictions(onnx_server: Server, server: Server, shapes: PreparedDataset) -> None:
    files = [
        ("files", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted(shapes.split_dir("test").glob("*/*.jpg"))
    ]
    with onnx_server.client() as onnx_http, server.client() as torch_http:
        assert onnx_http.get("/health").json()["backend"] == "onnxruntime"
        assert onnx_http.get("/metadata").json()["classes"] == shapes.classes
        served = [
            [
                p
                for chunk in range(0, len(files), 4)
                for p in http.post("/predict", files=files[chunk : chunk + 4]).json()["predictions"]
            ]
            for http in (onnx_http, torch_http)
        ]
    assert [p["label"] for p in served[0]] == [p["label"] for p in served[1]]
    for onnx_prediction, torch_prediction in zip(*served, strict=True):
        assert onnx_prediction["confidence"] == pytest.approx(torch_prediction["confidence"], abs=1e-4)
