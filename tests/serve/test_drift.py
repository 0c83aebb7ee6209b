"""``python -m image_classifier.drift``: recent served inputs against the training images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from image_classifier.data.layout import PreparedDataset
from image_classifier.drift import main
from image_classifier.image_stats import image_stats
from tests.serve.conftest import Server


def write_log(path: Path, images: list[Image.Image], label: str) -> Path:
    with open(path, "w") as handle:
        for image in images:
            handle.write(json.dumps({"input": image_stats(image), "label": label, "confidence": 0.9}) + "\n")
    return path


def load(paths: list[Path]) -> list[Image.Image]:
    return [Image.open(path).convert("RGB") for path in paths]


def test_inputs_like_the_training_data_show_no_drift(shapes: PreparedDataset, tmp_path: Path) -> None:
    train = sorted(shapes.split_dir("train").glob("*/*.jpg"))
    log = tmp_path / "log.jsonl"
    with open(log, "w") as handle:
        for path in train:
            record = {"input": image_stats(Image.open(path)), "label": path.parent.name}
            handle.write(json.dumps(record) + "\n")
    assert main(["--log", str(log), "--reference", str(shapes.split_dir("train")), "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "drift_report.json").read_text())
    assert report["drift_detected"] is False
    assert "brightness" in report["tests"] and report["tests"]["brightness"]["test"] == "ks_2samp"
    assert (tmp_path / "r" / "drift_report.md").read_text().startswith("# Input drift report")


def test_darkened_large_inputs_of_one_class_are_flagged(shapes: PreparedDataset, tmp_path: Path) -> None:
    images = load(sorted(shapes.split_dir("test").glob("*/*.jpg")))
    shifted = [ImageOps.invert(image).resize((300, 200)).point(lambda v: v // 4) for image in images]
    log = write_log(tmp_path / "log.jsonl", shifted, label=shapes.classes[0])
    assert main(["--log", str(log), "--reference", str(shapes.split_dir("train")), "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "drift_report.json").read_text())
    assert report["drift_detected"] is True
    assert {"brightness", "width", "height", "predicted_class"} <= set(report["drifted"])


@pytest.mark.parametrize("missing", ["log", "reference"])
def test_missing_inputs_are_one_line_errors(
    shapes: PreparedDataset, tmp_path: Path, missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "log.jsonl", load(sorted(shapes.split_dir("test").glob("*/*.jpg"))[:3]), "circle")
    args = {"log": str(log), "reference": str(shapes.split_dir("train")), missing: str(tmp_path / "nowhere")}
    with pytest.raises(SystemExit) as exit_info:
        main(["--log", args["log"], "--reference", args["reference"], "--out", str(tmp_path / "r")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "not found" in err[0]


def test_drift_reads_the_servers_prediction_log(server: Server, shapes: PreparedDataset, tmp_path: Path) -> None:
    files = [
        ("files", (p.name, p.read_bytes(), "image/jpeg")) for p in sorted(shapes.split_dir("test").glob("*/*.jpg"))[:4]
    ]
    with server.client() as http:
        assert http.post("/predict", files=files).status_code == 200
    out = tmp_path / "report"
    assert (
        main(["--log", str(server.prediction_log), "--reference", str(shapes.split_dir("train")), "--out", str(out)])
        == 0
    )
    report = json.loads((out / "drift_report.json").read_text())
    assert report["recent_samples"] >= 4 and "predicted_class" in report["tests"]


def test_drift_reads_a_prediction_log_from_a_url_through_fsspec(
    shapes: PreparedDataset, http_server: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bucket path is read the same way: the deployed service writes its log to a bucket, the drift job reads it."""
    base, served = http_server
    images = load(sorted(shapes.split_dir("test").glob("*/*.jpg")))
    write_log(served / "predictions.jsonl", images, label=shapes.classes[0])
    reference, out = str(shapes.split_dir("train")), tmp_path / "r"
    assert main(["--log", f"{base}/predictions.jsonl", "--reference", reference, "--out", str(out)]) == 0
    assert json.loads((out / "drift_report.json").read_text())["recent_samples"] == len(images)
    with pytest.raises(SystemExit) as exit_info:
        main(["--log", f"{base}/nowhere.jsonl", "--reference", reference, "--out", str(out)])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: Prediction log not found: {base}/nowhere.jsonl (set IC_PREDICTION_LOG when serving)."
