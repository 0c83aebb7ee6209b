"""A registered version: what its tag records, which version a reference names, and its bundle's bytes.

``resolve`` turns a reference (``NAME@v1.2.3``, ``NAME#prod``, ``NAME@latest`` or a tag name) into the version it
names, and ``fetch`` brings that version's bytes from the DVC cache or remote, checked against the registered
checksums. Neither needs torch: serving a registry reference imports this module alone.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from image_classifier.atomic import atomic_path
from image_classifier.hashing import CHUNK, file_digests
from image_classifier.registry.store import RegistryError, declared_path, dvc_md5, gto_errors
from image_classifier.registry.verdicts import failed

ACCURACY = "test/accuracy"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: where its bundle is, and what was recorded when it was registered."""

    name: str
    version: str
    commit: str
    path: str
    md5: str
    record: dict[str, Any] = field(default_factory=dict)
    stage: str | None = None

    @property
    def reference(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def sha256(self) -> str | None:
        return self.record.get("sha256")

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.record.get("metrics", {}))


def parse_record(message: str) -> dict[str, Any]:
    """The JSON object after the first blank line of a registration message; ``{}`` for a plain ``gto`` tag."""
    _, _, body = message.partition("\n\n")
    try:
        record = json.loads(body) if body.strip() else {}
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def resolve(reference: str, *, repo: Path | str = ".") -> ModelVersion:
    """The version ``reference`` names: ``NAME@v1.2.3``, ``NAME@latest``, ``NAME#STAGE`` (the version in that stage
    now) or a tag name such as ``NAME#prod#3`` (the version that tag assigned); ``gto:`` in front is allowed."""
    import gto.api
    from gto.constants import parse_shortcut

    reference = reference.removeprefix("gto:")
    with gto_errors():
        shortcut = parse_shortcut(reference)
        parsed = {"name": shortcut.name, "version": shortcut.version, "stage": shortcut.stage}
        if not shortcut.shortcut:
            parsed = {"version": None, "stage": None, **gto.api.parse_tag(reference)}
        versions = gto.api.show(str(repo), parsed["name"])
        if shortcut.latest:
            parsed["version"] = gto.api.find_latest_version(str(repo), parsed["name"]).version
        elif parsed["stage"] and not parsed["version"]:
            parsed["version"] = _version_in_stage(repo, parsed, reference, versions)
    return _model_version(repo, reference, parsed, versions)


def _version_in_stage(repo: Path | str, parsed: dict[str, Any], reference: str, versions: list[dict[str, Any]]) -> str:
    import gto.api

    if parsed.get("counter") is not None:  # a full assignment tag: the version it was put on
        for entry in versions:
            for stage in entry.get("stages", []):
                if any(assignment["tag"] == reference for assignment in stage.get("assignments", [])):
                    return str(entry["version"])
        raise RegistryError(f"No registered version has the tag {reference}.")
    found = gto.api.find_versions_in_stage(str(repo), parsed["name"], parsed["stage"], versions_per_stage=-1)
    found = found if isinstance(found, list) else [found] if found else []
    if not found:
        raise RegistryError(f"No version of {parsed['name']} is in stage {parsed['stage']!r}.")
    passing = [entry for entry in found if not failed(repo, f"{parsed['name']}@{entry.version}")]
    if not passing:
        name, stage = parsed["name"], parsed["stage"]
        raise RegistryError(f"Every version of {name} in stage {stage!r} failed its accuracy check.")
    return str(passing[0].version)


def _model_version(
    repo: Path | str, reference: str, parsed: dict[str, Any], versions: list[dict[str, Any]]
) -> ModelVersion:
    """The :class:`ModelVersion` for ``parsed``'s name and version, with its bundle's path and md5."""
    import dvc.api

    entry = next((entry for entry in versions if entry["version"] == parsed["version"]), None)
    if entry is None:
        raise RegistryError(f"{reference}: {parsed['name']} has no registered version {parsed['version']}.")
    commit = str(entry["commit_hexsha"])
    messages = [registration.get("message") or "" for registration in entry.get("registrations", [])]
    record = parse_record(messages[0] if messages else "")
    path = record.get("path") or declared_path(repo, parsed["name"], commit)
    try:
        md5 = dvc_md5(dvc.api.read(f"{path}.dvc", repo=str(repo), rev=commit), f"{path}.dvc")
    except (FileNotFoundError, OSError) as error:
        raise RegistryError(f"{reference}: commit {commit[:8]} has no {path}.dvc ({error}).") from None
    except Exception as error:  # dvc raises PathMissingError and other DvcExceptions for a file not in that commit
        raise RegistryError(f"{reference}: commit {commit[:8]} has no DVC-tracked bundle {path}: {error}") from None
    stage = parsed.get("stage")
    return ModelVersion(parsed["name"], str(parsed["version"]), commit, str(path), md5, record, stage)


def fetch(model: ModelVersion, directory: Path, *, repo: Path | str = ".") -> Path:
    """The bundle of ``model`` in ``directory`` (reused while its checksum matches), from the DVC cache or remote;
    its md5 and SHA-256 must be the registered ones."""
    target = directory / f"{model.name.replace('/', '-')}-{model.version}{Path(model.path).suffix}"
    if target.is_file() and _matches(model, *file_digests(target, "md5", "sha256")):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:
        _download(model, partial, repo)
        md5, sha256 = file_digests(partial, "md5", "sha256")
        if not _matches(model, md5, sha256):
            raise RegistryError(
                f"{model.reference}: the bundle fetched has md5 {md5} and SHA-256 {sha256}, "
                f"not the registered {model.md5} and {model.sha256}."
            )
    return target


def _matches(model: ModelVersion, md5: str, sha256: str) -> bool:
    """Whether the checksums are the registered ones (a plain ``gto`` tag records no SHA-256: md5 alone)."""
    return md5 == model.md5 and sha256 == (model.sha256 or sha256)


def _download(model: ModelVersion, partial: Path, repo: Path | str) -> None:
    import dvc.api

    try:
        with (
            dvc.api.open(model.path, repo=str(repo), rev=model.commit, mode="rb") as source,
            open(partial, "wb") as out,
        ):
            shutil.copyfileobj(source, out, CHUNK)
    except Exception as error:  # DVC raises PathMissingError for data in neither cache nor remote, others for I/O
        from dvc.exceptions import PathMissingError

        reason = "" if isinstance(error, PathMissingError) else f" ({str(error).splitlines()[0]})"
        raise RegistryError(
            f"{model.reference}: its bundle {model.path} (md5 {model.md5}) is in neither the DVC cache nor the "
            f"remote{reason}: run `dvc push` where it was registered."
        ) from None


def remote_url(model: ModelVersion, *, repo: Path | str = ".", remote: str | None = None) -> str:
    """Where the DVC remote keeps ``model``'s bundle (``gs://...`` for the GCS remote): a ``MODEL_URI``."""
    import dvc.api

    try:
        return str(dvc.api.get_url(model.path, repo=str(repo), rev=model.commit, remote=remote))
    except Exception as error:  # DvcException subclasses, e.g. an unknown remote name
        raise RegistryError(f"{model.reference}: no URL on remote {remote or '(default)'}: {error}") from None
