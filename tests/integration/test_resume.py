"""Exact resume: an interrupted run, resumed, ends with exactly the metrics of an uninterrupted one."""

from __future__ import annotations

import json
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
from tests.conftest import REPO_ROOT, TINY_OVERRIDES, ComposeFn

DETERMINISTIC = ["trainer.seed=3", "trainer.deterministic=true", "model.kwargs.width=8", "data.num_workers=0"]


def _overrides(data_root: Path, epochs: int, *extra: str) -> list[str]:
    return [*TINY_OVERRIDES, f"data.root={data_root}", f"trainer.max_epochs={epochs}", *DETERMINISTIC, *extra]


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


def test_interrupted_then_resumed_run_matches_an_uninterrupted_one(
    compose_config: ComposeFn, tiny_data_root: Path, tmp_path: Path
) -> None:
    uninterrupted = train(compose_config("train", _overrides(tiny_data_root, 2), output_dir=tmp_path / "full"))

    run_dir = tmp_path / "interrupted"
    done = threading.Event()
    watcher = _interrupt_when(run_dir / "checkpoints" / "last.pt", done)
    with pytest.raises(KeyboardInterrupt):  # auto with no last.pt yet: a fresh run
        train(compose_config("train", _overrides(tiny_data_root, 2, "trainer.resume=auto"), output_dir=run_dir))
    done.set()
    watcher.join()
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["training_state"]
    assert state["next_epoch"] == 1 and not (run_dir / "metrics.json").exists()

    resumed = train(compose_config("train", _overrides(tiny_data_root, 2, "trainer.resume=auto"), output_dir=run_dir))
    assert resumed == uninterrupted
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [0, 1]
    assert history == json.loads((tmp_path / "full" / "history.json").read_text())


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
def test_sigkilled_run_resumed_from_the_command_line_matches_an_uninterrupted_one(
    tiny_data_root: Path, tmp_path: Path
) -> None:
    full = _train_process(tiny_data_root, tmp_path / "full")
    assert full.wait(timeout=300) == 0, full.stderr.read().decode() if full.stderr else ""

    run_dir = tmp_path / "killed"
    killed = _train_process(tiny_data_root, run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    while not last.exists() and killed.poll() is None:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(timeout=60) == -signal.SIGKILL
    assert torch.load(last, weights_only=True)["training_state"]["next_epoch"] < 3
    assert not (run_dir / "metrics.json").exists()

    resumed = _train_process(tiny_data_root, run_dir, "trainer.resume=auto")
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
