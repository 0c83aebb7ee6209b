"""Training across two real hosts: two network namespaces joined by a veth pair, a torchrun agent in each
(:mod:`tests.helpers.hosts`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT, TINY_OVERRIDES
from tests.helpers.hosts import Host, Job
from tests.helpers.rewrites import wait_for_rewrites

RDZV_PORT = 29400
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
DETERMINISTIC = ["trainer.seed=3", "trainer.deterministic=true", "model.kwargs.width=8", "data.batch_size=8"]
# the quickstart's settings (`invoke train`: the baseline CNN for 12 epochs on 3,000 shapes images) on the CPU
QUICKSTART_OVERRIDES = ["logger=none", "trainer.device=cpu", "data.num_workers=0"]
QUICKSTART_STEPS = 12 * (3000 // 32)


def _torchrun_args(rdzv: Host, rdzv_id: str, *extra: str) -> list[str]:
    return [
        "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv.address}:{RDZV_PORT}",
        f"--rdzv-id={rdzv_id}", *extra,
    ]  # fmt: skip


def _train(rdzv: Host, rdzv_id: str, overrides: list[str], *torchrun: str) -> list[str]:
    return [*TORCHRUN, *_torchrun_args(rdzv, rdzv_id, *torchrun), "-m", "image_classifier.train", *overrides]


def _single_host(overrides: list[str], run_dir: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "image_classifier.train", *overrides, f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "PROJECT_ROOT": str(REPO_ROOT)}  # one process: all the cores
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())


def _parameter_bytes(run_dir: Path) -> int:
    state = torch.load(run_dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    return sum(t.numel() * t.element_size() for t in state.values() if t.is_floating_point())


def _check_one_run_over_the_veth(
    job: Job, hosts: tuple[Host, Host], runs: Path, traffic: dict[str, dict[str, int]], steps: int
) -> Path:
    """One run dir, reported by rank 0 alone, and the gradients of every step carried by the veth pair."""
    a, b = hosts
    (run_dir,) = runs.iterdir()
    main, other = (a, b) if "as rank 0" in job.output(a) else (b, a)
    assert "as rank 0" not in job.output(other)
    assert job.output(main).count("final metrics") == 1 and "final metrics" not in job.output(other)
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt")) == ["best.pt", "last.pt"]
    gradients = steps * _parameter_bytes(run_dir)  # each step all-reduces every gradient: sent and received once
    for host in hosts:
        veth, loopback = traffic[host.netns][host.veth], traffic[host.netns]["lo"]
        assert veth > gradients, (host.netns, veth, gradients)
        assert loopback < _parameter_bytes(run_dir), (host.netns, loopback, veth)  # not one copy of them
    return run_dir


def _run_on_both(
    hosts: tuple[Host, Host], overrides: list[str], timeout: float
) -> tuple[Job, dict[str, dict[str, int]]]:
    """Train on both hosts (rendezvous on A); the job and each host's bytes on its veth and loopback meanwhile."""
    a, _ = hosts
    before = {host.netns: host.byte_counts() for host in hosts}
    rdzv_id = uuid.uuid4().hex
    job = Job(hosts, {host.netns: _train(a, rdzv_id, overrides) for host in hosts})
    codes = job.wait(timeout)
    assert set(codes.values()) == {0}, job.tails()
    after = {host.netns: host.byte_counts() for host in hosts}
    return job, {name: {k: after[name][k] - before[name][k] for k in after[name]} for name in after}


@pytest.mark.slow
def test_a_tiny_run_on_two_hosts(two_hosts: tuple[Host, Host], tiny_data_root: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dirs = f"hydra.run.dir={runs}/${{launch_time:%H-%M-%S-%f}}"  # one dir only if the hosts agree on it
    overrides = [*TINY_OVERRIDES, f"data.root={tiny_data_root}", run_dirs]
    job, traffic = _run_on_both(two_hosts, overrides, timeout=600)
    run_dir = _check_one_run_over_the_veth(job, two_hosts, runs, traffic, steps=80 // 16)
    assert 0 <= json.loads((run_dir / "metrics.json").read_text())["test/accuracy"] <= 1


@pytest.mark.slow
def test_two_hosts_reach_the_test_accuracy_of_one_with_the_same_global_batch(
    two_hosts: tuple[Host, Host], tmp_path: Path
) -> None:
    overrides = [*QUICKSTART_OVERRIDES, f"data.root={tmp_path / 'data'}"]
    single = _single_host(overrides, tmp_path / "single")  # also generates the data, before two hosts read it
    runs = tmp_path / "runs"
    job, traffic = _run_on_both(two_hosts, [*overrides, f"hydra.run.dir={runs}/two-hosts"], timeout=1800)
    run_dir = _check_one_run_over_the_veth(job, two_hosts, runs, traffic, steps=QUICKSTART_STEPS)
    accuracy = json.loads((run_dir / "metrics.json").read_text())["test/accuracy"]
    assert abs(accuracy - single["test/accuracy"]) <= 0.03, (accuracy, single["test/accuracy"])


def _wait_for(path: Path, job: Job, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if any(process.poll() is not None for process in job.processes.values()) or time.monotonic() > deadline:
            job.kill()
            pytest.fail(f"training never wrote {path}:\n{job.tails()}")
        time.sleep(0.05)


@pytest.mark.slow
def test_a_host_that_goes_away_fails_the_job_within_the_timeout(
    two_hosts: tuple[Host, Host], tiny_data_root: Path, tmp_path: Path
) -> None:
    """Host B's link drops mid-training and its processes die: A's worker gives up after trainer.dist_timeout_s
    with a one-line reason, and A's agent, finding no host to restart with, ends the job."""
    a, b = two_hosts
    timeout_s, join_s = 15, 10
    overrides = [
        *TINY_OVERRIDES, f"data.root={tiny_data_root}", f"hydra.run.dir={tmp_path}/run", "trainer.max_epochs=1000",
        f"trainer.dist_timeout_s={timeout_s}", "trainer.resume=auto",
    ]  # fmt: skip
    restarts = ("--max-restarts", "1", "--join-timeout", str(join_s))
    job = Job(two_hosts, {h.netns: _invoke_train(rank, a, overrides, *restarts) for rank, h in enumerate(two_hosts)})
    _wait_for(tmp_path / "run" / "checkpoints" / "last.pt", job)
    gone = time.monotonic()
    b.disconnect()
    codes = job.wait(timeout=timeout_s + join_s + 120)
    ended = time.monotonic() - gone

    assert codes[b.netns] == -signal.SIGKILL and codes[a.netns] != 0
    reasons = [(t - gone, line) for t, line in job.lines[a.netns] if line.startswith("error: ")]
    assert reasons, job.tails()
    after, line = reasons[0]
    assert "no answer from the other processes within trainer.dist_timeout_s=15 s" in line, line
    assert after < timeout_s + 10, (after, line)
    assert ended < timeout_s + join_s + 60, (ended, job.tails())


def _invoke_train(node_rank: int, rdzv: Host, overrides: list[str], *options: str) -> list[str]:
    """``invoke train`` for one node of a two-node job that meets at ``rdzv``."""
    node = ["--nnodes", "2", "--node-rank", str(node_rank), "--rdzv", f"{rdzv.address}:{RDZV_PORT}", *options]
    return [sys.executable, "-m", "invoke", "train", *node, " ".join(overrides)]


def _after_rewrites(path: Path, count: int, job: Job) -> None:
    """Return once ``path`` has been written ``count`` times (each write renames a new file into place)."""
    if not wait_for_rewrites(path, count, lambda: all(p.poll() is None for p in job.processes.values())):
        pytest.fail(f"the job ended before {path} was written {count} times:\n{job.tails()}")


@pytest.mark.slow
def test_a_worker_killed_inside_an_epoch_is_restarted_and_the_job_ends_as_if_never_stopped(
    two_hosts: tuple[Host, Host], tiny_data_root: Path, tmp_path: Path
) -> None:
    """``invoke train --nnodes 2 ... --max-restarts 2`` on each host; SIGKILL B's worker after a checkpoint inside
    epoch 0: both agents restart their workers, which resume at that batch; metrics, history and W&B run as if
    the job had never stopped."""
    a, b = two_hosts
    overrides = [
        *TINY_OVERRIDES, f"data.root={tiny_data_root}", *DETERMINISTIC, "trainer.max_epochs=3",
        "trainer.checkpoint_every_n_steps=2", "logger=wandb", "logger.log_model=false",
    ]  # fmt: skip
    _run_on_both(two_hosts, [*overrides, f"hydra.run.dir={tmp_path}/uninterrupted"], timeout=900)

    run_dir = tmp_path / "restarted"
    restarting = [*overrides, f"hydra.run.dir={run_dir}", "trainer.resume=auto"]
    options = ("--max-restarts", "2", "--join-timeout", "120")
    job = Job(
        two_hosts, {host.netns: _invoke_train(rank, a, restarting, *options) for rank, host in enumerate(two_hosts)}
    )
    last = run_dir / "checkpoints" / "last.pt"
    _after_rewrites(last, 2, job)  # steps 2 and 4 of the 10 in epoch 0
    (victim,) = job.workers(b)
    victim.kill()
    codes = job.wait(timeout=900)
    assert set(codes.values()) == {0}, job.tails()

    output = job.output(a) + job.output(b)  # the workers' log lines (rank 0's, on either host)
    assert "Resuming from" in output and "at epoch 0, batch " in output, job.tails()
    assert [entry["epoch"] for entry in json.loads((run_dir / "history.json").read_text())] == [0, 1, 2]
    expected = json.loads((tmp_path / "uninterrupted" / "metrics.json").read_text())
    assert json.loads((run_dir / "metrics.json").read_text()) == expected
    run_id = torch.load(last, map_location="cpu", weights_only=True)["training_state"]["wandb_run_id"]
    offline = sorted(run_dir.glob("wandb/offline-run-*"))
    assert len(offline) == 2 and all(path.name.endswith(f"-{run_id}") for path in offline)
