"""Bring a dataset as the user has it (an archive as distributed or its unpacked folder) into ``raw/``."""

from __future__ import annotations

import posixpath
import shutil
import tarfile
import zipfile
from pathlib import Path

from image_classifier.atomic import atomic_path
from image_classifier.errors import DataError

LEAVES = "would be written outside the folder it is unpacked into"


def leaves_folder(member: str) -> bool:
    """Whether an archive member's path is absolute or climbs out of the folder it is unpacked into."""
    normal = posixpath.normpath(member.replace("\\", "/"))
    return normal.startswith("/") or normal == ".." or normal.startswith("../") or ":" in normal[:2]


def is_archive(path: Path) -> bool:
    return path.is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path))


def unpack(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar (any compression) into ``dest``, refusing members that escape it."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as handle:
                for member in handle.namelist():
                    if leaves_folder(member):
                        raise DataError(f"{archive.name}: member '{member}' {LEAVES}; the archive is refused.")
                handle.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as handle:
                handle.extractall(dest, filter="data")
        else:
            raise DataError(f"{archive} is not a .zip or .tar(.gz) archive.")
    except tarfile.FilterError as error:
        raise DataError(f"{archive.name}: member '{error.tarinfo.name}' {LEAVES}; the archive is refused.") from error
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"Could not unpack {archive}: {error}") from error


def import_source(source: Path, raw: Path) -> None:
    """Make ``raw`` a copy of ``source``: an archive is unpacked, a folder is copied. All or nothing."""
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"--source {source} does not exist.")
    if source.is_file() and not is_archive(source):
        raise DataError(f"--source {source} is neither a folder nor a .zip/.tar.gz archive.")
    if source.resolve() == Path(raw).resolve():
        return
    with atomic_path(raw, directory=True) as staging:
        if source.is_dir():
            shutil.copytree(source, staging, dirs_exist_ok=True)
        else:
            unpack(source, staging)


def unpack_nested(root: Path, name: str) -> None:
    """Unpack every archive called ``name`` under ``root`` next to itself (Kaggle zips inside zips)."""
    for archive in sorted(Path(root).rglob(name)):
        if is_archive(archive):
            with atomic_path(archive.with_suffix(""), directory=True) as staging:
                unpack(archive, staging)
            archive.unlink()
