"""File checksums, read in chunks so a large model never sits in memory whole. Standard library only: the slim
serving package imports it too."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def file_digests(path: Path | str, *algorithms: str) -> tuple[str, ...]:
    """The hex digests of ``path`` for each of ``algorithms`` (``hashlib`` names, e.g. ``md5``, ``sha256``), in
    one read of the file."""
    digests = [hashlib.new(name, usedforsecurity=False) for name in algorithms]
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            for digest in digests:
                digest.update(chunk)
    return tuple(digest.hexdigest() for digest in digests)


def sha256_file(path: Path | str) -> str:
    """The SHA-256 hex digest of ``path``."""
    (digest,) = file_digests(path, "sha256")
    return digest
