"""Joining the job's process group under ``torchrun``: a store of this round's own, a set-up deadline, one-line errors.

torchrun's agents share one TCP store with their workers, and it outlives a restart: the addresses the last
round's workers published in it are still there when the next round starts. A worker that reads a peer's key
before the peer has rewritten it connects to a port that died with the old worker ("Connection refused"), and
rounds whose workers disagree on such keys can wait for each other until the collective timeout. So rank 0 of
every round serves a new store, and the others take its address from the agent's store only once it answers
with the token rank 0 put in it: a stale address, from a dead worker, never does.

Setting up the group has its own deadline (``trainer.dist_setup_timeout_s``), far shorter than the collectives'
(``trainer.dist_timeout_s``): a peer that never arrives ends the job with one ``error:`` line naming it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import torch.distributed as dist

from image_classifier.errors import UserError

log = logging.getLogger(__name__)

ROUND_STORE_KEY = "image_classifier/round_store"
_TOKEN_KEY = "token"
_STALE_CHECK_S = 5.0  # a live store answers at once; a dead worker's port refuses until this runs out


class ProcessGroupSetupError(UserError):
    """The process group could not be set up within ``trainer.dist_setup_timeout_s``; the line names the peer."""


@dataclass(frozen=True)
class Launch:
    """What the launcher told this worker: its rank, the job's size, and where rank 0's node serves a store."""

    rank: int
    world_size: int
    master_addr: str
    master_port: int
    agent_store: bool  # torchrun's agent serves that store and keeps it across restarts

    @classmethod
    def from_env(cls) -> Launch:
        env = os.environ
        return cls(
            rank=int(env.get("RANK", 0)),
            world_size=int(env.get("WORLD_SIZE", 1)),
            master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
            master_port=int(env.get("MASTER_PORT", 29500)),
            agent_store=env.get("TORCHELASTIC_USE_AGENT_STORE") == "True",
        )


class Deadline:
    """The set-up's time limit, shared by its steps."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left(self, at_most: float | None = None) -> timedelta:
        left = max(0.01, self.end - time.monotonic())
        return timedelta(seconds=left if at_most is None else min(left, at_most))

    def passed(self) -> bool:
        return time.monotonic() >= self.end

    def describe(self) -> str:
        return f"within trainer.dist_setup_timeout_s={self.seconds:g} s"


def join(backend: str, setup_timeout_s: float, timeout_s: float) -> None:
    """Set up the default process group within ``setup_timeout_s``; its collectives then time out after
    ``timeout_s``. Raises :class:`ProcessGroupSetupError` naming the peer that did not come or answer."""
    launch = Launch.from_env()
    deadline = Deadline(setup_timeout_s)
    log.info(
        "Rank %d of %d: joining the process group (set-up timeout %g s)",
        launch.rank,
        launch.world_size,
        setup_timeout_s,
    )
    store = round_store(launch, deadline)
    check_in(store, launch, deadline)
    try:
        dist.init_process_group(
            backend, store=store, rank=launch.rank, world_size=launch.world_size, timeout=deadline.left()
        )
    except RuntimeError as error:
        raise ProcessGroupSetupError(_unreachable(error, launch, deadline)) from None
    store.set_timeout(timedelta(seconds=timeout_s))
    dist.set_timeout(timedelta(seconds=timeout_s))


def round_store(launch: Launch, deadline: Deadline) -> dist.Store:
    """A store that only this round's workers use, served by rank 0."""
    if not launch.agent_store:  # the launcher gave rank 0 a fresh port for this round (or there is no agent)
        return _serve_or_reach(launch.master_addr, launch.master_port, launch, deadline)
    agent = _reach(launch.master_addr, launch.master_port, launch, deadline, "torchrun's store")
    if launch.rank == 0:
        store = dist.TCPStore(launch.master_addr, 0, None, True, deadline.left(), wait_for_workers=False)
        token = uuid.uuid4().hex
        store.set(_TOKEN_KEY, token)
        agent.set(ROUND_STORE_KEY, json.dumps({"host": launch.master_addr, "port": store.port, "token": token}))
        return store
    return _this_rounds_store(agent, launch, deadline)


def _this_rounds_store(agent: dist.Store, launch: Launch, deadline: Deadline) -> dist.Store:
    """Rank 0's store of this round: the address in the agent's store, once a store there holds its token."""
    tried = ""
    while not deadline.passed():
        try:
            published = agent.get(ROUND_STORE_KEY).decode()
        except dist.DistStoreError:  # rank 0 has not published one yet (a first round)
            continue  # get() waited until the deadline
        if published != tried:
            tried = published
            address = json.loads(published)
            store = _answering(address["host"], int(address["port"]), address["token"], deadline)
            if store is not None:
                return store
        time.sleep(0.05)  # a stale address, from the last round: rank 0 has not replaced it yet
    raise ProcessGroupSetupError(
        f"rank {launch.rank}: rank 0 (at {launch.master_addr}) did not open this round's store {deadline.describe()} "
        "(its worker did not start, or its host went away)"
    )


def _answering(host: str, port: int, token: str, deadline: Deadline) -> dist.Store | None:
    """A client of the store at ``host:port`` if it answers with ``token``; None for a dead or foreign one."""
    try:  # a dead worker's port refuses at once, where a store client would retry until its timeout
        socket.create_connection((host, port), timeout=deadline.left(_STALE_CHECK_S).total_seconds()).close()
    except OSError:
        return None
    try:
        store = dist.TCPStore(host, port, None, False, deadline.left(_STALE_CHECK_S), wait_for_workers=False)
        if store.check([_TOKEN_KEY]) and store.get(_TOKEN_KEY).decode() == token:
            store.set_timeout(deadline.left())
            return store
    except (RuntimeError, ValueError):  # not a store, or one that went away meanwhile
        pass
    return None


def _serve_or_reach(host: str, port: int, launch: Launch, deadline: Deadline) -> dist.Store:
    if launch.rank == 0:
        try:
            return dist.TCPStore(host, port, None, True, deadline.left(), wait_for_workers=False)
        except RuntimeError as error:
            raise ProcessGroupSetupError(f"rank 0: cannot serve the job's store on port {port}: {error}") from None
    return _reach(host, port, launch, deadline, "rank 0's store")


def _reach(host: str, port: int, launch: Launch, deadline: Deadline, what: str) -> dist.Store:
    try:
        return dist.TCPStore(host, port, None, False, deadline.left(), wait_for_workers=False)
    except RuntimeError:
        raise ProcessGroupSetupError(
            f"rank {launch.rank}: could not reach {what} at {host}:{port} {deadline.describe()} "
            "(its process died, or its host went away)"
        ) from None


def check_in(store: dist.Store, launch: Launch, deadline: Deadline) -> None:
    """Each rank leaves its host's name; wait for every rank's, or name those that never came."""
    store.set(f"joined/{launch.rank}", socket.gethostname())
    keys = [f"joined/{rank}" for rank in range(launch.world_size)]
    try:
        store.wait(keys, deadline.left())
    except RuntimeError:
        missing = [rank for rank, key in enumerate(keys) if not _has(store, key)]
        if not missing:
            raise
        ranks = ", ".join(map(str, missing))
        raise ProcessGroupSetupError(
            f"rank {launch.rank}: rank {ranks} did not join the process group {deadline.describe()} "
            "(its worker died or hangs before the set-up, or its host went away)"
        ) from None


def _has(store: dist.Store, key: str) -> bool:
    try:
        return store.check([key])
    except RuntimeError:
        return False


def _unreachable(error: RuntimeError, launch: Launch, deadline: Deadline) -> str:
    """One line for a failed connection set-up (gloo, NCCL): the peer's address where the error names it."""
    message = str(error)
    peer = re.search(r"remote=\[?([^\]\s,]+)\]?:(\d+)", message) or re.search(r"\[([\d.:a-fA-F]+)\]:(\d+)", message)
    where = f" at {peer.group(1)}:{peer.group(2)}" if peer else ""
    first = message.strip().splitlines()[0] if message.strip() else type(error).__name__
    detail = first.rpartition("] ")[2]
    return (
        f"rank {launch.rank}: could not connect to a peer{where} {deadline.describe()} "
        f"(it died, or its host went away): {detail}"
    )
