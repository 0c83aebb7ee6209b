"""The checkpoint manager: best.pt only on improvement, last.pt atomic and in the background, the right resume."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from image_classifier.checkpoint import Bundle, load_bundle, save_bundle
from image_classifier.errors import CheckpointError
from image_classifier.model import create_model, model_data_config
from image_classifier.training.checkpointing import CheckpointManager
from image_classifier.training.monitor import Monitor

CLASSES = ["cat", "dog", "fox"]


class Run:
    """A tiny real model and optimizer, whose weights mark the epoch that last set them."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = create_model("baseline_cnn", num_classes=len(CLASSES), width=4)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)

    def train(self, epoch: int) -> None:
        """One real optimizer step, then the classifier's bias set to ``epoch`` (so a file tells which it holds)."""
        self.optimizer.zero_grad()
        self.model(torch.randn(2, 3, 32, 32)).sum().backward()
        self.optimizer.step()
        with torch.no_grad():
            self.head.bias.fill_(epoch)

    @property
    def head(self) -> nn.Linear:
        return self.model.get_classifier()  # type: ignore[return-value]

    def bundle(self, epoch: int, metrics: dict[str, float], **state: Any) -> Bundle:
        training_state = {"next_epoch": epoch + 1, "optimizer": self.optimizer.state_dict(), **state}
        return Bundle(
            state_dict=self.model.state_dict(),
            model_name="baseline_cnn",
            model_kwargs={"width": 4},
            classes=list(CLASSES),
            data_config=model_data_config(self.model, 32),
            config={"trainer": {"seed": 0}},
            lineage={"git_commit": "abc"},
            metrics=metrics,
            versions={"torch": torch.__version__},
            epoch=epoch,
            training_state=training_state,
        )

    def factories(self, epoch: int, metrics: dict[str, float]) -> dict[str, Callable[[], Bundle]]:
        return {"last": lambda: self.bundle(epoch, metrics), "best": lambda: self.bundle(epoch, metrics)}


def _epoch_of(path: Path) -> tuple[int, float]:
    """The bundle's epoch, and the epoch its weights were set in."""
    bundle = load_bundle(path)
    return bundle.epoch, float(bundle.state_dict["head.3.bias"][0])


def _manager(tmp_path: Path, mode: str = "max", **kwargs: Any) -> CheckpointManager:
    return CheckpointManager(tmp_path / "run" / "checkpoints", Monitor("val/accuracy", mode), **kwargs)


@pytest.mark.parametrize(
    ("mode", "values", "best_epochs"),
    [("max", [0.5, 0.4, 0.7, math.nan, 0.7], [0, 0, 2, 2, 2]), ("min", [0.5, 0.6, 0.3, 0.3, 0.1], [0, 0, 2, 2, 4])],
)
def test_best_is_replaced_only_when_the_monitored_metric_improves(
    tmp_path: Path, mode: str, values: list[float], best_epochs: list[int]
) -> None:
    run, manager = Run(), _manager(tmp_path, mode)
    for epoch, (value, best_epoch) in enumerate(zip(values, best_epochs, strict=True)):
        run.train(epoch)
        metrics = {"epoch": epoch, "val/accuracy": value}
        assert manager.save(epoch, metrics, **run.factories(epoch, metrics)) == (best_epoch == epoch)
        manager.wait()
        assert _epoch_of(manager.best_path) == (best_epoch, best_epoch)
        assert _epoch_of(manager.last_path) == (epoch, epoch)
    assert manager.monitor.best_epoch == best_epochs[-1]
    assert sorted(p.name for p in manager.directory.iterdir()) == ["best.pt", "last.pt"], "no temporary file left"


def test_a_bundle_is_written_as_it_was_when_handed_over(tmp_path: Path) -> None:
    """The write runs in the background from a copy: training that goes on meanwhile does not reach the file."""
    run, manager = Run(), _manager(tmp_path)
    run.train(0)
    metrics = {"val/accuracy": 0.5}
    manager.save(0, metrics, **run.factories(0, metrics))
    run.train(1)  # before the write is waited for
    manager.wait()
    assert _epoch_of(manager.last_path) == (0, 0) and _epoch_of(manager.best_path) == (0, 0)
    saved = load_bundle(manager.last_path).training_state["optimizer"]["state"][0]["momentum_buffer"]
    assert not torch.equal(saved, run.optimizer.state_dict()["state"][0]["momentum_buffer"])


def test_a_crash_mid_write_leaves_the_previous_file_and_reports_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, manager = Run(), _manager(tmp_path)
    run.train(0)
    manager.save(0, {"val/accuracy": 0.5}, **run.factories(0, {"val/accuracy": 0.5}))
    manager.wait()
    before = manager.last_path.read_bytes()

    real_save = torch.save

    def crash_halfway(payload: Any, handle: Any) -> None:
        real_save(payload, tmp_path / "whole.pt")
        handle.write((tmp_path / "whole.pt").read_bytes()[:4096])  # half a bundle reaches the disk, then...
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash_halfway)
    run.train(1)
    manager.save(1, {"val/accuracy": 0.9}, **run.factories(1, {"val/accuracy": 0.9}))
    with pytest.raises(OSError, match="No space left"):
        manager.wait()
    assert manager.last_path.read_bytes() == before and _epoch_of(manager.best_path) == (0, 0)
    assert sorted(p.name for p in manager.directory.iterdir()) == ["best.pt", "last.pt"]

    monkeypatch.setattr(torch, "save", real_save)  # the disk has room again: the next save goes through
    run.train(2)
    manager.save(2, {"val/accuracy": 0.3}, **run.factories(2, {"val/accuracy": 0.3}))
    manager.wait()
    assert _epoch_of(manager.last_path) == (2, 2)


def test_inside_an_epoch_last_pt_is_written_every_n_steps_but_not_after_its_last_batch(tmp_path: Path) -> None:
    run, manager = Run(), _manager(tmp_path, every_n_steps=2)
    saved = []
    for step in range(1, 7):  # six optimizer steps of a six-batch epoch
        run.train(step)
        if manager.save_within_epoch(step, step, 6, lambda step=step: run.bundle(-1, {}, batch=step)):
            manager.wait()
            saved.append(load_bundle(manager.last_path).training_state["batch"])
    assert saved == [2, 4] and not manager.best_path.exists()
    never = _manager(tmp_path / "never")
    assert not any(never.save_within_epoch(step, step, 6, lambda: run.bundle(-1, {})) for step in range(1, 7))


def test_only_the_main_process_writes_but_every_process_builds_its_bundles(tmp_path: Path) -> None:
    """Building a bundle gathers every rank's RNG streams: each process must take part, the main one writes."""
    run, manager = Run(), _manager(tmp_path, every_n_steps=1, writes=False)
    built = []

    def last() -> Bundle:
        built.append("last")
        return run.bundle(0, {})

    assert manager.save(0, {"val/accuracy": 0.5}, last=last, best=last) is True
    assert manager.save_within_epoch(1, 1, 2, last) is True
    manager.wait()
    assert built == ["last", "last", "last"] and not manager.directory.exists()


def test_the_best_bundle_is_read_back_and_replaced_with_the_tested_one(tmp_path: Path) -> None:
    run, manager = Run(), _manager(tmp_path)
    for epoch, value in enumerate([0.6, 0.5]):
        run.train(epoch)
        manager.save(epoch, {"val/accuracy": value}, **run.factories(epoch, {"val/accuracy": value}))
    best = manager.load_best()  # waits for the writes
    assert best.epoch == 0 and best.metrics == {"val/accuracy": 0.6}
    manager.replace_best(run.bundle(best.epoch, {**best.metrics, "test/accuracy": 0.55}))
    assert load_bundle(manager.best_path).metrics == {"val/accuracy": 0.6, "test/accuracy": 0.55}


def test_resume_auto_continues_this_runs_last_pt_or_starts_fresh(tmp_path: Path) -> None:
    run, manager = Run(), _manager(tmp_path)
    assert manager.resume_point("auto", "baseline_cnn", CLASSES) is None  # nothing yet: a fresh run
    assert manager.resume_point(None, "baseline_cnn", CLASSES) is None
    run.train(3)
    manager.save(3, {"val/accuracy": 0.5}, **run.factories(3, {"val/accuracy": 0.5}))
    manager.wait()
    point = manager.resume_point("auto", "baseline_cnn", CLASSES)
    assert point is not None and point.path == manager.last_path
    assert point.bundle.epoch == 3 and point.training_state["next_epoch"] == 4
    assert manager.resume_point(None, "baseline_cnn", CLASSES) is None  # null always starts fresh


def test_resume_takes_another_runs_dir_or_last_pt(tmp_path: Path) -> None:
    run, earlier = Run(), _manager(tmp_path / "earlier")
    run.train(1)
    earlier.save(1, {"val/accuracy": 0.5}, **run.factories(1, {"val/accuracy": 0.5}))
    earlier.wait()
    manager = _manager(tmp_path / "now")
    for given in (earlier.directory.parent, earlier.last_path):
        point = manager.resume_point(str(given), "baseline_cnn", CLASSES)
        assert point is not None and point.path == earlier.last_path and point.bundle.epoch == 1


def test_resume_refuses_what_cannot_continue_this_run(tmp_path: Path) -> None:
    run, manager = Run(), _manager(tmp_path)
    with pytest.raises(CheckpointError, match=r"no checkpoint at \S+/gone \(give a last\.pt, a run dir, or auto\)"):
        manager.resume_point(str(tmp_path / "gone"), "baseline_cnn", CLASSES)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(CheckpointError, match=r"no checkpoint at \S+/empty_run/checkpoints/last\.pt"):
        manager.resume_point(str(tmp_path / "empty_run"), "baseline_cnn", CLASSES)
    best = save_bundle(tmp_path / "best.pt", dataclasses.replace(run.bundle(0, {}), training_state={}))
    with pytest.raises(CheckpointError, match="holds no training state"):
        manager.resume_point(str(best), "baseline_cnn", CLASSES)
    last = save_bundle(tmp_path / "last.pt", run.bundle(0, {}))
    with pytest.raises(CheckpointError, match="trained as baseline_cnn on 3 classes; this run is baseline_cnn on 2"):
        manager.resume_point(str(last), "baseline_cnn", CLASSES[:2])
    with pytest.raises(CheckpointError, match="this run is resnet18 on 3 classes"):
        manager.resume_point(str(last), "resnet18", CLASSES)
