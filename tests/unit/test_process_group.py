"""Joining the process group as torchrun's workers do, in real processes around a store kept like the agent's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.helpers import round_store


@pytest.fixture
def agent_store() -> Iterator[dist.TCPStore]:
    """The store torchrun's agent serves on node 0 and shares with the workers of every round."""
    store = dist.TCPStore("127.0.0.1", 0, None, True, timedelta(seconds=30), wait_for_workers=False)
    yield store


def _round(
    store: dist.TCPStore, out: Path, name: str, ranks: list[int], delay: float = 0.0, setup_s: float | None = None
) -> dict[int, dict]:
    """Start the workers ``ranks`` of a round of a 2-process job; what each reported."""
    environment = round_store.agent_environment(store.port, world_size=2)
    setup_s = round_store.STARTING_TIMEOUT_S if setup_s is None else setup_s
    args = (ranks, environment, str(out), name, delay, setup_s)
    mp.start_processes(round_store.run, args=args, nprocs=len(ranks), start_method="spawn")
    return {rank: json.loads((out / f"{name}-{rank}.json").read_text()) for rank in ranks}


def test_a_restarted_round_joins_although_the_last_rounds_addresses_are_still_in_the_agents_store(
    agent_store: dist.TCPStore, tmp_path: Path
) -> None:
    first = _round(agent_store, tmp_path, "first", [0, 1])
    assert [first[rank].get("sum") for rank in (0, 1)] == [2.0, 2.0], first
    # the first round's workers died without leaving; in the next one rank 1 comes first and finds their keys
    second = _round(agent_store, tmp_path, "second", [0, 1], delay=2.0)
    assert [second[rank].get("sum") for rank in (0, 1)] == [2.0, 2.0], second


def test_a_peer_that_never_comes_is_named_in_one_line_within_the_setup_timeout(
    agent_store: dist.TCPStore, tmp_path: Path
) -> None:
    limit = f"within trainer.dist_setup_timeout_s={round_store.SETUP_TIMEOUT_S:g} s"
    alone = _round(agent_store, tmp_path, "first", [0], setup_s=round_store.SETUP_TIMEOUT_S)[0]
    assert alone["error"].startswith(f"rank 0: rank 1 did not join the process group {limit}"), alone
    assert "\n" not in alone["error"] and alone["seconds"] < round_store.SETUP_TIMEOUT_S + 2

    # rank 0's address is still in the agent's store, but the worker that served it is gone
    orphan = _round(agent_store, tmp_path, "second", [1], setup_s=round_store.SETUP_TIMEOUT_S)[1]
    assert orphan["error"].startswith(f"rank 1: rank 0 (at 127.0.0.1) did not open this round's store {limit}")
    assert "\n" not in orphan["error"] and orphan["seconds"] < round_store.SETUP_TIMEOUT_S + 2
