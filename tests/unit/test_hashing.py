"""File checksums: read in chunks, several digests in one read, and importable with the standard library alone."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from image_classifier.hashing import CHUNK, file_digests, sha256_file


def test_digests_match_hashlib_over_a_file_longer_than_a_chunk(tmp_path: Path) -> None:
    payload = os.urandom(2 * CHUNK + 123)
    path = tmp_path / "model.bin"
    path.write_bytes(payload)
    md5, sha256 = file_digests(path, "md5", "sha256")
    assert md5 == hashlib.md5(payload).hexdigest()
    assert sha256 == sha256_file(path) == sha256_file(str(path)) == hashlib.sha256(payload).hexdigest()


def test_an_empty_file_has_the_empty_digest(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert sha256_file(path) == hashlib.sha256(b"").hexdigest()


def test_it_imports_nothing_outside_the_standard_library() -> None:
    probe = (
        "import json, sys; before = set(sys.modules); import image_classifier.hashing; "
        "print(json.dumps(sorted({name.split('.')[0] for name in set(sys.modules) - before})))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    imported = set(json.loads(done.stdout))
    assert "image_classifier" in imported
    assert imported - set(sys.stdlib_module_names) == {"image_classifier"}
