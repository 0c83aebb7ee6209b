"""Downloads from a real local HTTP server: verified by md5, nothing left behind on failure."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from image_classifier.data.sources.download import download_file
from image_classifier.errors import DataError

PAYLOAD = b"an archive, byte for byte" * 1000


def test_a_matching_download_lands_complete(http_server: tuple[str, Path], tmp_path: Path) -> None:
    url, served = http_server
    (served / "a.tar.gz").write_bytes(PAYLOAD)
    dest = download_file(f"{url}/a.tar.gz", tmp_path / "out" / "a.tar.gz", md5=hashlib.md5(PAYLOAD).hexdigest())
    assert dest.read_bytes() == PAYLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["a.tar.gz"]


def test_a_checksum_mismatch_is_one_clear_error_and_leaves_nothing(
    http_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, served = http_server
    (served / "a.tar.gz").write_bytes(PAYLOAD)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"Checksum mismatch .* expected md5 0{32}, got [0-9a-f]{32}"):
        download_file(f"{url}/a.tar.gz", out / "a.tar.gz", md5="0" * 32)
    assert list(out.iterdir()) == []


def test_a_missing_file_says_what_to_do(http_server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = http_server
    with pytest.raises(DataError, match=r"Could not download .*404.* --source PATH"):
        download_file(f"{url}/nothing.tar.gz", tmp_path / "out" / "nothing.tar.gz", md5=None)
    assert list((tmp_path / "out").iterdir()) == []
