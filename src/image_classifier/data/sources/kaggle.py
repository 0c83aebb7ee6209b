"""Kaggle downloads through kagglehub, with credentials from the environment only."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from image_classifier.errors import DataError

CREDENTIAL_VARIABLES: tuple[str, ...] = ("KAGGLE_USERNAME", "KAGGLE_KEY")


def has_credentials() -> bool:
    return all(os.environ.get(name) for name in CREDENTIAL_VARIABLES) or bool(os.environ.get("KAGGLE_API_TOKEN"))


def kaggle_download(handle: str, dest: Path, *, dataset: str, page: str, competition: bool = False) -> None:
    """Download the Kaggle dataset or competition ``handle`` (unpacked) into ``dest``."""
    credentials = (
        "set KAGGLE_USERNAME and KAGGLE_KEY (kaggle.com > Settings > API > Create New Token) in the environment"
    )
    by_hand = (
        f"download it from {page} yourself and run `invoke data {dataset} --source PATH` with the .zip or its folder"
    )
    if not has_credentials():
        raise DataError(f"{dataset} comes from Kaggle and needs credentials: either {credentials}, or {by_hand}.")
    try:
        import kagglehub
    except ImportError as error:
        raise DataError(
            f"Downloading from Kaggle needs kagglehub (pip install 'image-classifier[kaggle]'), or {by_hand}."
        ) from error
    try:
        path = kagglehub.competition_download(handle) if competition else kagglehub.dataset_download(handle)
    except Exception as error:  # kagglehub raises many kinds: HTTP, authentication, rules not accepted
        rules = " (accept the competition's rules on its page first)" if competition else ""
        raise DataError(f"Kaggle download of {handle} failed{rules}: {error}. Or {by_hand}.") from error
    shutil.copytree(Path(path), dest, dirs_exist_ok=True)
