"""Data-parallel training under torchrun: one job, one run dir, and a dead rank fails the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch

from tests.conftest import REPO_ROOT, TINY_OVERRIDES
from tests.helpers.rewrites import wait_for_rewrites

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
# the same global batch (32) and learning rate for 1 and 2 processes, trained to a plateau
COMPARISON_OVERRIDES = [
    "logger=none",
    "trainer.device=cpu",
    "data.num_workers=0",
    "data.image_size=32",
    "data.batch_size=32",
    "data.generate.train_per_class=200",
    "data.generate.val_per_class=30",
    "data.generate.test_per_class=50",
    "trainer.max_epochs=8",
    "optimizer.lr=0.02",
]


def torchrun(nproc: int, overrides: list[str], **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PROJECT_ROOT": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    command = [*TORCHRUN, f"--nproc_per_node={nproc}", "-m", "image_classifier.train", *overrides]
    return subprocess.Popen(command, cwd=REPO_ROOT, env=env, text=True, **kwargs)  # type: ignore[call-overload]


def test_two_processes_write_one_run_dir_with_one_checkpoint_set(tiny_data_root: Path, tmp_path: Path) -> None:
    # %f (microseconds) would give every rank its own dir if each read its own clock
    run_dirs = f"{tmp_path}/runs/${{launch_time:%H-%M-%S-%f}}"
    overrides = [*TINY_OVERRIDES, f"data.root={tiny_data_root}", f"hydra.run.dir={run_dirs}"]
    job = torchrun(2, overrides, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output

    assert [p.name for p in tmp_path.iterdir()] == ["runs"]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) == ["best.pt", "last.pt"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/accuracy"] <= 1.0
    bundle = torch.load(run_dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert bundle["metrics"]["test/accuracy"] == pytest.approx(metrics["test/accuracy"])
    # only rank 0 reports: one final table, one line per epoch
    assert output.count("final metrics") == 1
    assert output.count("epoch 0: train/accuracy") == 1


def test_head_warmup_and_gradient_accumulation_train_under_two_processes(tiny_data_root: Path, tmp_path: Path) -> None:
    """The backbone frozen for the first epoch gets no gradients, which plain DDP would wait for."""
    overrides = [
        *TINY_OVERRIDES, f"data.root={tiny_data_root}", f"hydra.run.dir={tmp_path}/run", "data.batch_size=4",
        "trainer.max_epochs=2", "trainer.head_warmup_epochs=1", "trainer.accumulate_grad_batches=2",
    ]  # fmt: skip
    job = torchrun(2, overrides, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output[-3000:]
    assert "epoch 0: training the head only" in output and "epoch 1: training all layers" in output
    assert "test/accuracy" in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_a_killed_rank_fails_the_whole_job(tiny_data_root: Path, tmp_path: Path) -> None:
    overrides = [
        *TINY_OVERRIDES,
        f"data.root={tiny_data_root}",
        f"hydra.run.dir={tmp_path}/run",
        "trainer.max_epochs=1000",
        "trainer.dist_timeout_s=30",
    ]
    job = torchrun(2, overrides, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers = _wait_for_training(job, tmp_path / "run" / "checkpoints" / "last.pt")
        victim = next(w for w in workers if w.environ().get("RANK") == "1")
        os.kill(victim.pid, signal.SIGKILL)
        returncode = job.wait(timeout=120)
    finally:
        _kill_tree(job.pid)
    assert returncode != 0
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)


@pytest.mark.slow
def test_a_two_process_run_resumes_from_its_last_checkpoint(tiny_data_root: Path, tmp_path: Path) -> None:
    overrides = [*TINY_OVERRIDES, f"data.root={tiny_data_root}", f"hydra.run.dir={tmp_path}/run"]
    for epochs in (1, 2):
        job = torchrun(
            2,
            [*overrides, f"trainer.max_epochs={epochs}", "trainer.resume=auto"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = job.communicate(timeout=300)
        assert job.returncode == 0, output[-2000:]
    assert output.count("Resuming from") == 1
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [entry["epoch"] for entry in history] == [0, 1]
    bundle = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert bundle["epoch"] == 1


@pytest.mark.slow
def test_two_processes_reach_the_accuracy_of_one_with_the_same_global_batch(tmp_path: Path) -> None:
    overrides = [
        f"data.root={tmp_path / 'data'}",
        *COMPARISON_OVERRIDES,
    ]
    single = subprocess.run(
        [sys.executable, "-m", "image_classifier.train", *overrides, f"hydra.run.dir={tmp_path}/single"],
        cwd=REPO_ROOT,
        env={**os.environ, "PROJECT_ROOT": str(REPO_ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    job = torchrun(2, [*overrides, f"hydra.run.dir={tmp_path}/ddp"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = job.communicate(timeout=1200)
    assert job.returncode == 0, output[-2000:]

    accuracy = {
        run: json.loads((tmp_path / run / "metrics.json").read_text())["test/accuracy"] for run in ("single", "ddp")
    }
    assert abs(accuracy["ddp"] - accuracy["single"]) <= 0.05, accuracy


@pytest.mark.slow
def test_a_worker_killed_inside_an_epoch_is_restarted_and_the_run_ends_as_if_never_stopped(
    tiny_data_root: Path, tmp_path: Path
) -> None:
    """``invoke train --nproc 2 --max-restarts 1``: SIGKILL rank 1 after a checkpoint inside epoch 0; torchrun
    restarts both workers, they resume at that batch, and metrics, history and the W&B run are an unbroken run's."""
    overrides = [
        *TINY_OVERRIDES, f"data.root={tiny_data_root}", "data.batch_size=8", "trainer.max_epochs=3",
        "trainer.seed=3", "trainer.deterministic=true", "model.kwargs.width=8", "trainer.checkpoint_every_n_steps=2",
        "logger=wandb", "logger.log_model=false",
    ]  # fmt: skip
    full = torchrun(2, [*overrides, f"hydra.run.dir={tmp_path}/full"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = full.communicate(timeout=600)
    assert full.returncode == 0, output[-3000:]

    run_dir = tmp_path / "restarted"
    command = [sys.executable, "-m", "invoke", "train", "--nproc", "2", "--max-restarts", "1"]
    restarting = " ".join([*overrides, f"hydra.run.dir={run_dir}", "trainer.resume=auto"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen([*command, restarting], cwd=REPO_ROOT, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)  # fmt: skip
    try:
        workers = _wait_for_training(job, run_dir / "checkpoints" / "last.pt", writes=2)  # steps 2 and 4 of 10
        next(w for w in workers if w.environ().get("RANK") == "1").kill()
        output, _ = job.communicate(timeout=600)
    finally:
        _kill_tree(job.pid)
    assert job.returncode == 0, output[-3000:]
    assert "Resuming from" in output and "at epoch 0, batch " in output
    assert [entry["epoch"] for entry in json.loads((run_dir / "history.json").read_text())] == [0, 1, 2]
    expected = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert json.loads((run_dir / "metrics.json").read_text()) == expected
    run_id = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["training_state"]["wandb_run_id"]
    offline = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(offline) == 2 and all(path.name.endswith(f"-{run_id}") for path in offline)


def _wait_for_training(job: subprocess.Popen[str], marker: Path, writes: int = 1) -> list[psutil.Process]:
    """The job's two worker processes, once ``marker`` has been written ``writes`` times (a new file each)."""
    started = wait_for_rewrites(marker, writes, lambda: job.poll() is None, poll_s=0.005, timeout_s=240)
    assert started, "the job ended before training started"
    workers = _workers(psutil.Process(job.pid))
    assert len(workers) == 2
    return workers


def _workers(launcher: psutil.Process) -> list[psutil.Process]:
    """The processes torchrun started under ``launcher`` (given a LOCAL_RANK), not their own children (W&B's)."""
    ranked = {p.pid: p for p in launcher.children(recursive=True) if "LOCAL_RANK" in p.environ()}
    return [p for p in ranked.values() if p.ppid() not in ranked]


def _kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    for process in [*parent.children(recursive=True), parent]:
        process.kill()


def test_invoke_train_launches_torchrun_with_the_overrides() -> None:
    result = subprocess.run(
        ["invoke", "--dry", "train", "--nproc", "2", "trainer.max_epochs=1 logger=none"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--standalone --nproc_per_node=2 -m image_classifier.train trainer.max_epochs=1 logger=none" in result.stdout
