"""A two-process gloo job whose rank 1 dies or stops answering (a light module: spawned children import it)."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from image_classifier.distributed import LostPeerError, lost_peers_in_one_line

TIMEOUT_S = 2.0


def run(rank: int, init_file: str, out_dir: str, how: str) -> None:
    """Rank 1 exits (``exit``) or sleeps past the timeout (``hang``) after one collective; rank 0 writes
    ``<how>.json``: the error it reported and how long that took."""
    timeout = timedelta(seconds=TIMEOUT_S)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2, timeout=timeout)
    dist.barrier()
    if rank == 1:
        if how == "hang":
            time.sleep(TIMEOUT_S + 1)
        os._exit(0)
    started = time.monotonic()
    try:
        with lost_peers_in_one_line(TIMEOUT_S):
            for _ in range(3):
                dist.all_reduce(torch.ones(4))
        message = "no error"
    except LostPeerError as error:
        message = str(error)
    Path(out_dir, f"{how}.json").write_text(json.dumps({"message": message, "seconds": time.monotonic() - started}))
    os._exit(0)  # the process group is broken: no orderly teardown
