"""Command lines of the serving pieces: one-line errors, and the serving benchmark end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from image_classifier.api.__main__ import main as serve_main
from image_classifier.bench.serve import main as bench_main


def one_line_error(capsys: pytest.CaptureFixture[str], main: Callable[[list[str]], int], argv: list[str]) -> str:
    """The single stderr line of ``main(argv)``, which must exit with status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    return line


def test_serve_without_a_model_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MODEL_PATH", raising=False)
    assert one_line_error(capsys, serve_main, ["--port", "0"]) == (
        "error: MODEL_PATH is not set: point it at a checkpoint bundle (best.pt) or an exported .onnx."
    )


def test_serve_with_a_missing_model_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gone = tmp_path / "gone.onnx"
    assert one_line_error(capsys, serve_main, ["--model", str(gone)]) == f"error: Model not found: {gone}"


def test_serve_rejects_a_bad_limit_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IC_MAX_BATCH", "many")
    assert one_line_error(capsys, serve_main, ["--model", "x.pt"]) == "error: IC_MAX_BATCH='many' is not an integer."


def test_serve_rejects_a_bad_port_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PORT", "http")
    assert one_line_error(capsys, serve_main, ["--model", "x.pt"]) == "error: PORT='http' is not an integer."


def test_serve_names_a_bad_flag_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, serve_main, ["--model", "x.pt", "--max-batch", "0"])
    assert line == "error: --max-batch=0 must be at least 1."


@pytest.mark.slow
def test_serving_benchmark_reports_every_configuration(tmp_path: Path) -> None:
    out = tmp_path / "bench_serve.json"
    args = ["--model-name", "baseline_cnn", "--image-size", "32", "--duration", "0.5", "--warmup", "0.2"]
    assert bench_main([*args, "--concurrency", "1", "4", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    configurations = {(r["backend"], r["micro_batching"], r["concurrency"]) for r in report["results"]}
    assert len(configurations) == 8
    assert all(r["errors"] == 0 and r["requests"] > 0 for r in report["results"])
    assert {"model", "pipeline", "model_cpu", "model_b1", "model_b8"} <= set(
        report["offline_ceilings_images_per_s"]["onnxruntime"]
    )
    unbatched = [r["mean_batch"] for r in report["results"] if not r["micro_batching"]]
    assert unbatched == [1.0] * 4  # the served batch sizes come from the server's own metrics
