"""The user's own photos through the pipeline: import, train, evaluate; and an import interrupted with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from image_classifier.checkpoint import load_bundle
from image_classifier.data.layout import load_prepared_dataset
from image_classifier.evaluate import evaluate
from image_classifier.train import train
from tests.conftest import compose
from tests.helpers.importing import make_project, run_data
from tests.helpers.photos import photo_folders

CLASSES = ["chat noir", "chien", "été"]


def test_import_then_train_and_evaluate_with_the_users_class_names(tmp_path, monkeypatch, capsys) -> None:
    project = make_project(tmp_path, monkeypatch)
    source = photo_folders(tmp_path / "photos", dict.fromkeys(CLASSES, 10), size=(32, 32))
    code, _, err = run_data(project, capsys, "pets", "--source", str(source))
    assert code == 0, err
    data = [f"data.root={project.data}", "data.num_workers=0", "data.batch_size=8"]
    run = tmp_path / "run"
    cfg = compose(
        "train", ["data=pets", *data, "trainer.max_epochs=1", "trainer.device=cpu", "logger=none"], output_dir=run
    )
    assert cfg.data.image_size == 32, "the size the import picked from the photos"
    metrics = train(cfg)
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    bundle = load_bundle(run / "checkpoints" / "best.pt")
    assert bundle.classes == CLASSES
    assert bundle.lineage["data_fingerprint"] == load_prepared_dataset(project.prepared("pets")).fingerprint
    checkpoint = run / "checkpoints" / "best.pt"
    evaluated = tmp_path / "evaluate"
    cfg = compose(
        "evaluate", ["data=pets", *data, f"checkpoint={checkpoint}", "trainer.device=cpu"], output_dir=evaluated
    )
    results = evaluate(cfg)
    assert results["accuracy"] == pytest.approx(metrics["test/accuracy"])
    written = json.loads((evaluated / "metrics.json").read_text())
    assert {f"f1/{label}" for label in CLASSES} <= set(written), "per-class metrics under the user's class names"


def test_an_interrupted_reimport_keeps_the_data_that_was_there(tmp_path, monkeypatch, capsys) -> None:
    project = make_project(tmp_path, monkeypatch)
    small = photo_folders(tmp_path / "small", {"a": 10, "b": 10})
    assert run_data(project, capsys, "pets", "--source", str(small))[0] == 0
    before = {path: path.read_bytes() for path in project.prepared("pets").rglob("*") if path.is_file()}
    raw_before = sorted(path.relative_to(project.data) for path in (project.data / "raw").rglob("*"))
    config = project.config("pets").read_text()
    big = photo_folders(tmp_path / "big", {"a": 150, "b": 150}, seed=3, size=(160, 160))
    command = [sys.executable, "-m", "image_classifier.data", "pets", "--source", str(big), "--force"]
    command += ["--root", str(project.data), "--workers", "2"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ})
    processed = project.data / "processed"
    while process.poll() is None and not list(processed.glob(".pets.*.partial/.incoming/*/*")):  # decoding
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 130, error
    assert error.strip().splitlines()[-1].startswith("interrupted: nothing was kept")
    after = {path: path.read_bytes() for path in project.prepared("pets").rglob("*") if path.is_file()}
    assert after == before, "the prepared data that was there is untouched"
    assert sorted(path.relative_to(project.data) for path in (project.data / "raw").rglob("*")) == raw_before
    assert project.config("pets").read_text() == config
    leftovers = [path for path in project.data.rglob("*") if ".partial" in path.name]
    assert not leftovers, leftovers
