"""Workers of one torchrun round, without torchrun: the environment its agent gives them, a store it keeps.

A light module: spawned children import it. ``run`` joins the job's process group as the training entry point
does, all-reduces one tensor, and writes what happened to ``<out_dir>/<round>-<rank>.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from image_classifier.distributed import init_distributed
from image_classifier.errors import UserError

SETUP_TIMEOUT_S = 3.0  # for a peer that never comes
STARTING_TIMEOUT_S = 60.0  # for peers that start at different times on a busy machine


def agent_environment(agent_port: int, world_size: int) -> dict[str, str]:
    """What torchrun's agents tell their workers when they share their store with them (torch's default)."""
    return {
        "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(agent_port),
        "TORCHELASTIC_USE_AGENT_STORE": "True",
    }


def run(
    index: int,
    ranks: list[int],
    environment: dict[str, str],
    out_dir: str,
    round_name: str,
    delay: float,
    setup_s: float,
) -> None:
    """Worker ``ranks[index]``: rank 0 starts ``delay`` seconds late; ends with ``os._exit`` as a killed worker
    would, without leaving the group, so the agent's store keeps what this round wrote."""
    rank = ranks[index]
    os.environ.update({**environment, "RANK": str(rank), "LOCAL_RANK": "0"})
    if rank == 0:
        time.sleep(delay)
    started = time.monotonic()
    try:
        init_distributed(timeout_s=30, setup_timeout_s=setup_s)
        total = torch.ones(1)
        dist.all_reduce(total)
        result: dict[str, object] = {"sum": total.item()}
    except UserError as error:
        result = {"error": str(error)}
    result["seconds"] = time.monotonic() - started
    Path(out_dir, f"{round_name}-{rank}.json").write_text(json.dumps(result))
    os._exit(0)
