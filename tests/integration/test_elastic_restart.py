"""Elastic restarts under torchrun: a killed worker's job recovers every time, a peer gone for good fails it fast.

Two torchrun agents, as a new user starts them (plain ``torchrun``, c10d rendezvous, ``--max-restarts=2``): on
this machine's loopback, and on two hosts (network namespaces, :mod:`tests.helpers.hosts`). Rank 1's worker is
SIGKILLed in epoch 1, after a checkpoint inside it; every repetition must end with the metrics of a run never
stopped. ``RESTART_REPETITIONS`` sets how many kill-and-restart runs each test makes (default 2; the README
records a run of 10).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import torch

from image_classifier.data.shapes import ShapesSpec, generate_shapes
from tests.helpers.hosts import Host, Job
from tests.helpers.rewrites import file_version

REPETITIONS = int(os.environ.get("RESTART_REPETITIONS", "2"))
SETUP_TIMEOUT_S = 10
SHAPES = ShapesSpec(seed=7, train_per_class=30, val_per_class=4, test_per_class=4, min_side=32, max_side=40)
# 300 training images, 8 a step: 37 steps an epoch, so last.pt is written at steps 20, 37 (epoch 0's end) and 40
OVERRIDES = [
    "data.batch_size=8", "data.num_workers=0", "data.image_size=32", "trainer.device=cpu", "logger=none",
    "trainer.seed=3", "trainer.deterministic=true", "model.kwargs.width=8", "trainer.max_epochs=2",
    "trainer.checkpoint_every_n_steps=20", f"data.generate.train_per_class={SHAPES.train_per_class}",
    f"data.generate.val_per_class={SHAPES.val_per_class}", f"data.generate.test_per_class={SHAPES.test_per_class}",
    f"data.generate.seed={SHAPES.seed}", f"+data.generate.min_side={SHAPES.min_side}",
    f"+data.generate.max_side={SHAPES.max_side}",
]  # fmt: skip
NODES = ("node0", "node1")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _torchrun(rdzv: str, rdzv_id: str, overrides: list[str], max_restarts: int) -> list[str]:
    """One node's agent of a 2-node job, as the torchrun documentation starts it."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1", "--rdzv-backend=c10d",
        f"--rdzv-endpoint={rdzv}", f"--rdzv-id={rdzv_id}", f"--max-restarts={max_restarts}",
        "-m", "image_classifier.train", *overrides,
    ]  # fmt: skip


def _on_loopback(overrides: list[str], max_restarts: int = 2, port: int | None = None) -> Job:
    rdzv, rdzv_id = f"127.0.0.1:{port or _free_port()}", uuid.uuid4().hex
    return Job.here({node: _torchrun(rdzv, rdzv_id, overrides, max_restarts) for node in NODES})


def _on_hosts(hosts: tuple[Host, Host], overrides: list[str], max_restarts: int = 2) -> Job:
    rdzv, rdzv_id = f"{hosts[0].address}:29400", uuid.uuid4().hex
    return Job(hosts, {host.netns: _torchrun(rdzv, rdzv_id, overrides, max_restarts) for host in hosts})


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    generate_shapes(root / "processed" / "shapes", SHAPES)
    return root


@pytest.fixture(scope="module")
def uninterrupted(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    """The metrics of the same 2-process job never stopped."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    job = _on_loopback([*OVERRIDES, f"data.root={data_root}", f"hydra.run.dir={run_dir}"], max_restarts=0)
    codes = job.wait(timeout=1800)
    assert set(codes.values()) == {0}, job.tails()
    return json.loads((run_dir / "metrics.json").read_text())


def _checkpoint_inside_epoch_1(last: Path, job: Job, timeout: float = 1800) -> bool:
    """Wait until last.pt holds a state inside epoch 1 (each rewrite is loaded once); False if the job ended."""
    seen: set[tuple[int, int]] = set()
    deadline = time.monotonic() + timeout
    while job.running() and time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            version = file_version(last)
            if version not in seen:
                seen.add(version)
                state = torch.load(last, map_location="cpu", weights_only=True)["training_state"]
                if state["next_epoch"] == 1 and state.get("batch", 0) > 0:
                    return True
        time.sleep(0.01)
    return False


def _kill_and_restart(job: Job, run_dir: Path, expected: dict[str, float]) -> str:
    """Kill rank 1's worker after a checkpoint inside epoch 1; '' if the job then ends as if never stopped."""
    if not _checkpoint_inside_epoch_1(run_dir / "checkpoints" / "last.pt", job):
        job.kill()
        return f"no checkpoint inside epoch 1:\n{job.tails()}"
    victim = job.worker_of_rank(1)
    assert victim is not None, job.tails()
    victim.kill()
    try:
        codes = job.wait(timeout=900)
    except pytest.fail.Exception as error:
        return str(error)
    output = "".join(job.output(node) for node in job.processes)
    if set(codes.values()) != {0} or "at epoch 1, batch 3" not in output:
        return f"exit statuses {codes}:\n{job.tails()}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return "" if metrics == expected else f"metrics {metrics} differ from {expected}"


def _repeat(start: Callable[[list[str]], Job], data_root: Path, tmp_path: Path, expected: dict[str, float]) -> None:
    failures = []
    for repetition in range(REPETITIONS):
        run_dir = tmp_path / f"run-{repetition}"
        overrides = [*OVERRIDES, f"data.root={data_root}", f"hydra.run.dir={run_dir}", "trainer.resume=auto"]
        failure = _kill_and_restart(start(overrides), run_dir, expected)
        print(f"repetition {repetition}: {'recovered' if not failure else 'failed'} (load {os.getloadavg()[0]:.1f})")
        if failure:
            failures.append(f"repetition {repetition}: {failure}")
    assert not failures, f"{REPETITIONS - len(failures)}/{REPETITIONS} recovered\n" + "\n".join(failures)


@pytest.mark.slow
def test_two_agents_on_one_host_recover_from_a_killed_worker_every_time(
    data_root: Path, uninterrupted: dict[str, float], tmp_path: Path
) -> None:
    _repeat(_on_loopback, data_root, tmp_path, uninterrupted)


@pytest.mark.slow
def test_two_hosts_recover_from_a_killed_worker_every_time(
    two_hosts: tuple[Host, Host], data_root: Path, uninterrupted: dict[str, float], tmp_path: Path
) -> None:
    _repeat(lambda overrides: _on_hosts(two_hosts, overrides), data_root, tmp_path, uninterrupted)


def _worker_appears(job: Job, rank: int, timeout: float = 900) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while (worker := job.worker_of_rank(rank)) is None:
        if not job.running() or time.monotonic() > deadline:
            job.kill()
            pytest.fail(f"rank {rank}'s worker never started:\n{job.tails()}")
        time.sleep(0.02)
    return worker


def _check_one_line_within_the_setup_timeout(job: Job, survivor: str, lost_rank: int) -> None:
    """The surviving node's worker names the missing rank in one line, at most the set-up timeout after joining."""
    codes = job.wait(timeout=900)
    assert codes[survivor] != 0, job.tails()
    lines = job.lines[survivor]
    errors = [(t, line) for t, line in lines if line.startswith("error: ")]
    joined = [t for t, line in lines if "joining the process group" in line]
    assert len(errors) == 1 and joined, job.tails()
    (failed, line), started = errors[0], joined[0]
    limit = f"within trainer.dist_setup_timeout_s={SETUP_TIMEOUT_S} s"
    expected = f"error: rank {1 - lost_rank}: rank {lost_rank} did not join the process group {limit}"
    assert line.startswith(expected), line
    assert failed - started < SETUP_TIMEOUT_S + 5, (failed - started, job.tails())


def _store_node(job: Job, port: int) -> str:
    """The node whose agent hosts the rendezvous store (it listens on the rendezvous port). Losing that node ends
    the job in torchrun itself, whose agents lose their store: the case tested here is losing the other one."""
    for name in NODES:
        agent = psutil.Process(job.processes[name].pid)
        for process in (agent, *agent.children(recursive=True)):
            with contextlib.suppress(psutil.Error):
                if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in process.net_connections()):
                    return name
    raise AssertionError(f"no agent listens on the rendezvous port {port}:\n{job.tails()}")


def _rank(worker: psutil.Process) -> int:
    return int(worker.environ()["RANK"])


def _gone_for_good(data_root: Path, tmp_path: Path) -> list[str]:
    run = f"hydra.run.dir={tmp_path / 'run'}"
    return [*OVERRIDES, f"data.root={data_root}", run, f"trainer.dist_setup_timeout_s={SETUP_TIMEOUT_S}"]


@pytest.mark.slow
def test_a_node_lost_before_its_worker_joins_fails_the_job_in_one_line_within_the_setup_timeout(
    data_root: Path, tmp_path: Path
) -> None:
    """A node's agent and worker die right after the rendezvous (trainer.dist_timeout_s stays 600 s)."""
    port = _free_port()
    job = _on_loopback(_gone_for_good(data_root, tmp_path), max_restarts=0, port=port)
    for rank in (0, 1):  # both workers started: the rendezvous is over
        _worker_appears(job, rank)
    survivor = _store_node(job, port)
    node = next(name for name in NODES if name != survivor)
    (worker,) = job.workers(node)
    lost_rank = _rank(worker)
    os.killpg(job.processes[node].pid, 9)
    worker.kill()
    _check_one_line_within_the_setup_timeout(job, survivor, lost_rank)


@pytest.mark.slow
def test_a_host_lost_before_its_worker_joins_fails_the_job_in_one_line_within_the_setup_timeout(
    two_hosts: tuple[Host, Host], data_root: Path, tmp_path: Path
) -> None:
    job = _on_hosts(two_hosts, _gone_for_good(data_root, tmp_path), max_restarts=0)
    for rank in (0, 1):  # both workers started: the rendezvous is over
        _worker_appears(job, rank)
    store, lost = two_hosts  # the rendezvous endpoint is the first host's: losing it ends the job in torchrun itself
    (worker,) = job.workers(lost)
    lost_rank = _rank(worker)
    lost.disconnect()
    _check_one_line_within_the_setup_timeout(job, store.netns, lost_rank)
