"""Several hosts on one machine: network namespaces joined by a veth pair, and jobs of one process per host.

Each host has its own network stack, hostname (a UTS namespace) and ``/etc/hosts`` (``/etc/netns/NAME/hosts``),
so torchrun's c10d rendezvous, the workers' store and gloo find each other by name, as on two machines; the
veth pair is the only link between them. They share this machine's filesystem, as nodes share a volume.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO_ROOT
from tests.helpers.tools import missing


@dataclass
class Host:
    """One network namespace: its name, hostname, address on the veth pair and end of it."""

    netns: str
    hostname: str
    address: str
    veth: str

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run on this host: in its namespace, under its own hostname."""
        inner = f'hostname {self.hostname} && exec "$@"'
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c", inner, "sh", *argv]

    def byte_counts(self) -> dict[str, int]:
        """Bytes sent plus received so far on the veth end and on loopback."""
        out = ip("-n", self.netns, "-j", "-s", "link", "show")
        stats = {link["ifname"]: link["stats64"] for link in json.loads(out)}
        return {name: stats[name]["rx"]["bytes"] + stats[name]["tx"]["bytes"] for name in (self.veth, "lo")}

    def disconnect(self) -> None:
        """The host goes away: its link drops (nothing reaches the other host any more), then its processes die."""
        ip("-n", self.netns, "link", "set", self.veth, "down")
        for pid in ip("netns", "pids", self.netns).split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30).stdout


@contextlib.contextmanager
def two_hosts() -> Iterator[tuple[Host, Host]]:
    """Hosts A (10.77.0.1) and B (10.77.0.2), named uniquely; torn down whatever happens (skips without ip)."""
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        missing("netns")
    tag = uuid.uuid4().hex[:6]  # interface names: at most 15 characters
    hosts = (
        Host(f"ic-{tag}-a", f"ic-{tag}-a", "10.77.0.1", f"ic{tag}a"),
        Host(f"ic-{tag}-b", f"ic-{tag}-b", "10.77.0.2", f"ic{tag}b"),
    )
    try:
        _create(hosts)
        yield hosts
    finally:
        for host in hosts:
            with contextlib.suppress(subprocess.CalledProcessError):
                for pid in ip("netns", "pids", host.netns).split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                ip("netns", "del", host.netns)  # also removes its end of the veth pair, and so the pair
            shutil.rmtree(Path("/etc/netns") / host.netns, ignore_errors=True)


def _create(hosts: tuple[Host, Host]) -> None:
    """Both namespaces, the veth pair between them (an address each), loopback up, and each one's /etc/hosts."""
    a, b = hosts
    try:
        for host in hosts:
            ip("netns", "add", host.netns)
    except subprocess.CalledProcessError as error:
        missing("netns", f"ip netns add: {error.stderr.strip()}")
    ip("link", "add", a.veth, "type", "veth", "peer", "name", b.veth)
    names = "".join(f"{host.address} {host.hostname}\n" for host in hosts)
    for host in hosts:
        ip("link", "set", host.veth, "netns", host.netns)
        ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", host.veth)
        for link in (host.veth, "lo"):
            ip("-n", host.netns, "link", "set", link, "up")
        hosts_file = Path("/etc/netns") / host.netns / "hosts"
        hosts_file.parent.mkdir(parents=True, exist_ok=True)
        hosts_file.write_text(f"127.0.0.1 localhost\n{names}")


def job_env() -> dict[str, str]:
    return {**os.environ, "PROJECT_ROOT": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _name(node: Host | str) -> str:
    return node if isinstance(node, str) else node.netns


class Job:
    """One torchrun agent per node (a host, or a name on this one), their output collected line by line (with the
    time each line arrived)."""

    def __init__(self, hosts: tuple[Host, ...], argv_for: dict[str, list[str]]) -> None:
        commands = {host.netns: host.command(argv_for[host.netns]) for host in hosts}
        self.start(commands)

    @classmethod
    def here(cls, argv_for: dict[str, list[str]]) -> Job:
        """Agents on this machine's own network (loopback), named by the keys of ``argv_for``."""
        job = cls.__new__(cls)
        job.start(argv_for)
        return job

    def start(self, commands: dict[str, list[str]]) -> None:
        self.processes = {
            name: subprocess.Popen(
                argv, cwd=REPO_ROOT, env=job_env(), text=True,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
            for name, argv in commands.items()
        }  # fmt: skip
        self.lines: dict[str, list[tuple[float, str]]] = {name: [] for name in self.processes}
        self.readers = [
            threading.Thread(target=self._read, args=(name, process), daemon=True)
            for name, process in self.processes.items()
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, name: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines[name].append((time.monotonic(), line))

    def output(self, node: Host | str) -> str:
        return "".join(line for _, line in self.lines[_name(node)])

    def running(self) -> bool:
        return all(process.poll() is None for process in self.processes.values())

    def wait(self, timeout: float) -> dict[str, int]:
        """Every agent's exit status; past ``timeout`` the job is killed and the test fails with its output."""
        deadline = time.monotonic() + timeout
        try:
            codes = {name: p.wait(max(1.0, deadline - time.monotonic())) for name, p in self.processes.items()}
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the job did not end within {timeout:g} s:\n{self.tails()}")
        for reader in self.readers:
            reader.join(timeout=10)
        return codes

    def kill(self) -> None:
        """Every agent and its workers (torchrun starts them in sessions of their own)."""
        workers = [worker for name in self.processes for worker in self.workers(name)]
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.kill()

    def tails(self, chars: int = 3000) -> str:
        return "\n".join(f"--- {name}:\n" + "".join(t for _, t in lines)[-chars:] for name, lines in self.lines.items())

    def workers(self, node: Host | str) -> list[psutil.Process]:
        """The training processes of ``node``'s agent: those torchrun gave a LOCAL_RANK, not their own children."""
        try:
            tree = psutil.Process(self.processes[_name(node)].pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        ranked = {}
        for process in tree:
            with contextlib.suppress(psutil.Error):
                if "LOCAL_RANK" in process.environ():
                    ranked[process.pid] = process
        return [process for process in ranked.values() if process.ppid() not in ranked]

    def worker_of_rank(self, rank: int) -> psutil.Process | None:
        """The training process of global rank ``rank``, on whichever node; None while there is none."""
        for name in self.processes:
            for process in self.workers(name):
                with contextlib.suppress(psutil.Error):
                    if process.environ().get("RANK") == str(rank):
                        return process
        return None
