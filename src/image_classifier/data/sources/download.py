"""Download one file over HTTP(S), verified by its published md5; nothing is left behind on failure."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from image_classifier.atomic import atomic_path
from image_classifier.errors import DataError

CHUNK = 1 << 20


def download_file(url: str, dest: Path, md5: str | None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest``; the file appears only once complete and matching ``md5``."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    with atomic_path(dest) as partial:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
                total = response.length
                with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = f"HTTP {error.code} {error.reason}" if isinstance(error, urllib.error.HTTPError) else error
            reason = getattr(reason, "reason", reason)
            raise DataError(
                f"Could not download {url}: {reason}. "
                "Check the network, or download it yourself and pass --source PATH."
            ) from error
        if md5 and digest.hexdigest() != md5.lower():
            raise DataError(
                f"Checksum mismatch for {url}: expected md5 {md5}, got {digest.hexdigest()}. "
                "The download is corrupt or not the published file; nothing was kept."
            )
    return dest
