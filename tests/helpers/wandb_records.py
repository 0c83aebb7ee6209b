"""Read what a W&B offline run recorded, from its ``run-*.wandb`` transaction log."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

_BLOCK = 32768
_HEADER = 7  # ":W&B" magic + version


def _chunks(data: bytes) -> Iterator[bytes]:
    """LevelDB-log framing: 32 KiB blocks of (crc, length, type) chunks."""
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        chunk, pos = data[pos : pos + length], pos + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk


@dataclass
class OfflineRun:
    config_keys: set[str] = field(default_factory=set)
    history_keys: set[str] = field(default_factory=set)
    artifacts: list[tuple[str, str]] = field(default_factory=list)
    run_id: str = ""
    exit_code: int | None = None
    """From the run's exit record, which ``run.finish()`` writes; None while the run is not finished."""


def read_offline_run(run_dir: Path) -> OfflineRun:
    """Config keys, history keys, artifacts and exit code of the single offline run under ``run_dir/wandb``."""
    (log_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    run = OfflineRun()
    for raw in _chunks(log_file.read_bytes()):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id = record.run.run_id
            run.config_keys |= {item.key for item in record.run.config.update}
        elif kind == "config":
            run.config_keys |= {item.key for item in record.config.update}
        elif kind == "history":
            run.history_keys |= {item.key or "/".join(item.nested_key) for item in record.history.item}
        elif kind == "artifact":
            run.artifacts.append((record.artifact.name, record.artifact.type))
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run
