"""Exact resume: an interrupted run, resumed, ends with exactly the metrics of an uninterrupted one."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from image_classifier.errors import ConfigError
from image_classifier.train import train
from tests.conftest import REPO_ROOT, TINY_OVERRIDES, ComposeFn, compose
from tests.helpers.rewrites import wait_for_rewrites

DETERMINISTIC = ["trainer.seed=3", "trainer.deterministic=true", "model.kwargs.width=8", "data.num_workers=0"]
BATCHES_PER_EPOCH = 10  # 80 training images in batches of 8


def _overrides(data_root: Path, epochs: int, *extra: str) -> list[str]:
    return [
        *TINY_OVERRIDES, f"data.root={data_root}", "data.batch_size=8", f"trainer.max_epochs={epochs}",
        *DETERMINISTIC, *extra,
    ]  # fmt: skip


def _interrupt_when(path: Path, done: threading.Event) -> threading.Thread:
    """Send this process SIGINT (Ctrl-C) as soon as ``path`` appears, unless ``done`` is set first."""

    def watch() -> None:
        while not done.is_set():
            if path.exists():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.005)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _interrupted(compose_config: ComposeFn, overrides: list[str], run_dir: Path) -> dict:
    """Train until the first last.pt appears, then Ctrl-C; the training state of that last.pt."""
    done = threading.Event()
    watcher = _interrupt_when(run_dir / "checkpoints" / "last.pt", done)
    with pytest.raises(KeyboardInterrupt):  # auto with no last.pt yet: a fresh run
        train(compose_config("train", overrides, output_dir=run_dir))
    done.set()
    watcher.join()
    for thread in threading.enumerate():  # as the interpreter does on exit: a write handed over lands on disk
        if thread.name == "checkpoint-writer":
            thread.join()
    assert not (run_dir / "metrics.json").exists()
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["training_state"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, float], Path]:
    """Two epochs without a stop (and without checkpoints inside an epoch): metrics and run dir."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    return train(compose("train", _overrides(tiny_data_root, 2), output_dir=run_dir)), run_dir


def test_interrupted_then_resumed_run_matches_an_uninterrupted_one(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path, uninterrupted: tuple[dict[str, float], Path]
) -> None:
    run_dir, overrides = tmp_path / "interrupted", _overrides(tiny_data_root, 2, "trainer.resume=auto")
    state = _interrupted(compose_config, overrides, run_dir)
    assert (state["next_epoch"], state["batch"]) == (1, 0)

    resumed = train(compose_config("train", overrides, output_dir=run_dir))
    expected, expected_dir = uninterrupted
    assert resumed == expected
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert history == json.loads((expected_dir / "history.json").read_text())


def test_a_run_interrupted_inside_an_epoch_resumes_at_the_exact_batch(
    compose_config: ComposeFn,
    tiny_data_root: Path,
    tmp_path: Path,
    uninterrupted: tuple[dict[str, float], Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """last.pt every 3 steps, Ctrl-C after the first: the resumed run continues at that batch and ends identical."""
    run_dir = tmp_path / "interrupted"
    overrides = _overrides(tiny_data_root, 2, "trainer.resume=auto", "trainer.checkpoint_every_n_steps=3")
    state = _interrupted(compose_config, overrides, run_dir)
    assert state["next_epoch"] == 0 and 0 < state["batch"] < BATCHES_PER_EPOCH and state["batch"] % 3 == 0
    assert state["step"] == state["batch"] and state["history"] == []
    assert state["epoch_totals"][0]["samples"] == 8 * state["batch"]

    with caplog.at_level(logging.INFO, logger="image_classifier.training.recipe"):
        resumed = train(compose_config("train", overrides, output_dir=run_dir))
    assert f"at epoch 0, batch {state['batch']} (step {state['step']})" in caplog.text
    expected, expected_dir = uninterrupted
    assert resumed == expected
    assert json.loads((run_dir / "history.json").read_text()) == json.loads((expected_dir / "history.json").read_text())


def test_checkpoints_inside_an_epoch_need_a_positive_interval(compose_config: ComposeFn, tiny_data_root: Path) -> None:
    with pytest.raises(ConfigError, match=r"^trainer.checkpoint_every_n_steps=0: must be at least 1 \(or null\)"):
        train(compose_config("train", _overrides(tiny_data_root, 1, "trainer.checkpoint_every_n_steps=0")))


def test_resume_from_a_missing_checkpoint_fails_with_one_line(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "last.pt"
    with pytest.raises(ConfigError, match=f"trainer.resume={missing}: no such checkpoint"):  # before any work
        train(compose_config("train", _overrides(tiny_data_root, 1, f"trainer.resume={missing}")))
    assert not (tmp_path / "run").exists()


def _train_process(data_root: Path, run_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "image_classifier.train", *_overrides(data_root, 3, *extra), f"hydra.run.dir={run_dir}"
    ]  # fmt: skip
    env = {**os.environ, "PROJECT_ROOT": str(REPO_ROOT)}
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "writes", "inside_epoch"),
    [((), 1, False), (("trainer.checkpoint_every_n_steps=1",), 4, True)],
    ids=["after-an-epoch", "inside-an-epoch"],
)
def test_sigkilled_run_resumed_from_the_command_line_matches_an_uninterrupted_one(
    tiny_data_root: Path, tmp_path: Path, extra: tuple[str, ...], writes: int, inside_epoch: bool
) -> None:
    full = _train_process(tiny_data_root, tmp_path / "full")
    assert full.wait(timeout=300) == 0, full.stderr.read().decode() if full.stderr else ""

    run_dir = tmp_path / "killed"
    killed = _train_process(tiny_data_root, run_dir, *extra)
    last = run_dir / "checkpoints" / "last.pt"
    wait_for_rewrites(last, writes, lambda: killed.poll() is None)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    state = torch.load(last, weights_only=True)["training_state"]
    assert state["next_epoch"] < 3 and (state["batch"] > 0) == inside_epoch
    assert not (run_dir / "metrics.json").exists()

    resumed = _train_process(tiny_data_root, run_dir, "trainer.resume=auto", *extra)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode() if resumed.stderr else ""
    expected = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert json.loads((run_dir / "metrics.json").read_text()) == expected


@pytest.mark.slow
def test_resumed_run_continues_the_same_wandb_run(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    first = [*_overrides(tiny_data_root, 1), "logger=wandb", "logger.log_model=false"]
    train(compose_config("train", first, output_dir=run_dir))
    run_id = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["training_state"]["wandb_run_id"]
    assert run_id

    again = [*_overrides(tiny_data_root, 2, "trainer.resume=auto"), "logger=wandb", "logger.log_model=false"]
    train(compose_config("train", again, output_dir=run_dir))
    offline_runs = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(offline_runs) == 2 and all(path.name.endswith(f"-{run_id}") for path in offline_runs)
    assert torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["lineage"]["wandb_run_id"] == run_id
