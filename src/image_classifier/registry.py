"""The model registry: GTO tags over bundles versioned with DVC.

``register`` copies a bundle to its artifact's path (``artifacts.yaml``; ``models/NAME.pt`` for a new one),
versions it with DVC (``dvc add``, ``dvc push``), commits the ``.dvc`` file and tags that commit ``NAME@vX.Y.Z``
with the bundle's checksum, metrics and lineage as JSON in the tag message. ``promote`` assigns a stage
(``NAME#STAGE#N``). ``resolve`` turns a reference (``NAME@v1.2.3``, ``NAME#prod``, ``NAME@latest`` or a tag name)
into the version it names, and ``fetch`` brings that version's bytes from the DVC cache or remote, checked against
the registered checksums. ``gto show`` lists the versions and stages.

``python -m image_classifier.registry register|promote|resolve|check --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from image_classifier.atomic import atomic_path
from image_classifier.checkpoint import Bundle, load_bundle
from image_classifier.errors import UserError, report_user_errors
from image_classifier.gate import failed, record_check, recorded_check

log = logging.getLogger(__name__)

DEFAULT_NAME = "image-classifier"
STAGES = ("staging", "prod")
ACCURACY = "test/accuracy"
CHUNK = 1 << 20


class RegistryError(UserError):
    """A registry operation that cannot be done: a bad reference, a missing bundle, a check that failed."""


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


# --- git, DVC and GTO ------------------------------------------------------------------------------


def git(root: Path | str, *args: str) -> str:
    """Run git in ``root``; its stdout. A failure is a :class:`RegistryError` with git's own line."""
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise RegistryError(f"git {args[0]} failed in {root}: {reason[-1] if reason else done.returncode}")
    return done.stdout.strip()


def repo_root(repo: Path | str) -> Path:
    """The top of the git repository ``repo`` is in, which must also be a DVC repository."""
    path = Path(repo)
    if not path.is_dir():
        raise RegistryError(f"Registry repository not found: {repo}")
    try:
        root = Path(git(path, "rev-parse", "--show-toplevel"))
    except RegistryError:
        raise RegistryError(f"{repo} is not in a git repository (the registry's versions are git tags).") from None
    if not (root / ".dvc").is_dir():
        raise RegistryError(f"{root} is not a DVC repository: run `dvc init` there first.")
    return root


@contextlib.contextmanager
def gto_errors() -> Iterator[None]:
    """GTO's exceptions as one-line :class:`RegistryError` s."""
    from gto.exceptions import GTOException

    try:
        yield
    except GTOException as error:
        raise RegistryError(str(error).splitlines()[0]) from None


@contextlib.contextmanager
def dvc_repo(root: Path) -> Iterator[Any]:
    """The DVC repository at ``root``; DVC's hints on stdout (``git add ...``) are left out."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet), Repo(str(root)) as repo:
            yield repo
    except DvcException as error:
        raise RegistryError(f"DVC: {str(error).splitlines()[0]}") from None


def artifact_path(root: Path, name: str) -> str:
    """The path ``artifacts.yaml`` declares for ``name``; a new model artifact is declared at ``models/NAME.pt``."""
    from gto.index import FileIndexManager

    with gto_errors():
        index = FileIndexManager.from_path(str(root))
        declared = index.get_index().state.get(name)
        if declared is not None and declared.path:
            return str(declared.path)
        path = f"models/{name}.pt"
        index.add(
            name,
            type="model",
            path=path,
            must_exist=False,
            allow_same_path=False,
            labels=[],
            description="image-classifier bundle (python -m image_classifier.registry)",
            custom=None,
            update=declared is not None,
        )
    return path


def dvc_md5(text: str, source: str) -> str:
    """The md5 a ``.dvc`` file records for its single output."""
    try:
        (out,) = yaml.safe_load(text)["outs"]
        return str(out["md5"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        raise RegistryError(f"{source} is not a .dvc file with one output.") from None


# --- register and promote --------------------------------------------------------------------------


def register(
    checkpoint: Path | str,
    *,
    repo: Path | str = ".",
    name: str = DEFAULT_NAME,
    version: str | None = None,
    remote: str | None = None,
    push: bool = True,
    push_tag: bool = False,
    wandb: bool = True,
) -> ModelVersion:
    """Record the bundle ``checkpoint`` as a new version of ``name`` (see the module docstring). ``push`` sends
    the bundle to the DVC remote (``remote``, default the repository's), ``push_tag`` the tag to git's origin."""
    bundle = load_bundle(checkpoint)
    root = repo_root(repo)
    path = artifact_path(root, name)
    target = root / path
    if Path(checkpoint).resolve() != target.resolve():
        with atomic_path(target) as partial:
            shutil.copyfile(checkpoint, partial)
    with dvc_repo(root) as dvc:
        dvc.add(str(target))
        if push:
            dvc.push(targets=[str(target)], remote=remote)
    md5 = dvc_md5((root / f"{path}.dvc").read_text(), f"{path}.dvc")
    record = version_record(bundle, target, path, md5)
    commit_paths(root, [f"{path}.dvc", str(Path(path).parent / ".gitignore"), "artifacts.yaml"], f"Register {name}")
    message = f"{name}: {record['model']} on {record['data']}, {ACCURACY} {record['metrics'].get(ACCURACY)}"
    with gto_errors():
        import gto.api

        registration = gto.api.register(
            str(root), name, "HEAD", version=normal_version(version), message=f"{message}\n\n{json.dumps(record)}"
        )
        if push_tag:
            git(root, "push", "origin", f"{name}@{registration.version}")
    model = ModelVersion(name, registration.version, git(root, "rev-parse", "HEAD"), path, md5, record)
    if wandb:
        link_to_wandb(model, target)
    return model


def normal_version(version: str | None) -> str | None:
    """``1.2.3`` as GTO spells it, ``v1.2.3``; ``None`` lets GTO pick the next version."""
    if not version:
        return None
    return version if version.startswith("v") else f"v{version}"


def version_record(bundle: Bundle, file: Path, path: str, md5: str) -> dict[str, Any]:
    """What a registration tag's message carries: checksums, what the model is, its metrics and lineage."""
    metrics = {key: value for key, value in bundle.metrics.items() if math.isfinite(value)}
    data = bundle.config.get("data", {}) if isinstance(bundle.config, dict) else {}
    return {
        "path": path,
        "md5": md5,
        "sha256": sha256_of(file),
        "size": file.stat().st_size,
        "model": bundle.model_name,
        "data": data.get("name", "unknown") if isinstance(data, dict) else "unknown",
        "classes": list(bundle.classes),
        "input_size": list(bundle.input_size),
        "epoch": bundle.epoch,
        "metrics": metrics,
        "lineage": bundle.lineage,
        "versions": bundle.versions,
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def commit_paths(root: Path, paths: list[str], message: str) -> None:
    """Commit ``paths`` (those that exist) and nothing else that is staged; no commit when they are unchanged."""
    present = [path for path in paths if (root / path).exists()]
    git(root, "add", "--", *present)
    changed = subprocess.run(["git", "diff", "--cached", "--quiet", "--", *present], cwd=root, check=False)
    if changed.returncode != 0:
        git(root, "commit", "-q", "-m", message, "--", *present)


def promote(name: str, version: str, stage: str, *, repo: Path | str = ".", push_tag: bool = False) -> ModelVersion:
    """Assign ``stage`` to ``name@version``, once its bundle is known to resolve to the registered bytes."""
    if stage not in STAGES:
        raise RegistryError(f"Stage {stage!r} is not one of {', '.join(STAGES)}.")
    root = repo_root(repo)
    model = resolve(f"{name}@{normal_version(version)}", repo=root)
    with tempfile.TemporaryDirectory(prefix="promote-") as scratch:
        fetch(model, Path(scratch), repo=root)
    require_passed(root, model)
    summary = {"version": model.version, "sha256": model.sha256, "metrics": model.metrics}
    with gto_errors():
        import gto.api

        assignment = gto.api.assign(
            str(root),
            name,
            stage,
            version=model.version,
            message=f"{model.reference} to {stage}\n\n{json.dumps(summary)}",
        )
        if push_tag:
            git(root, "push", "origin", assignment.tag)
    return ModelVersion(**{**asdict(model), "stage": stage})


def require_passed(root: Path, model: ModelVersion) -> None:
    """Raise unless ``model``'s accuracy check was recorded and passed (see :mod:`image_classifier.gate`)."""
    result = recorded_check(root, model.reference)
    if result is None:
        raise RegistryError(
            f"{model.reference} was never checked: run `python -m image_classifier.registry check "
            f"{model.reference}` (it records the result) before promoting it."
        )
    if not result.get("passed"):
        raise RegistryError(
            f"{model.reference} failed its accuracy check (accuracy {result.get('measured')} below the registered "
            f"{result.get('registered')}): not promoted."
        )


# --- resolve and fetch -----------------------------------------------------------------------------


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
    path = record.get("path") or _declared_path(repo, parsed["name"], commit)
    try:
        md5 = dvc_md5(dvc.api.read(f"{path}.dvc", repo=str(repo), rev=commit), f"{path}.dvc")
    except (FileNotFoundError, OSError) as error:
        raise RegistryError(f"{reference}: commit {commit[:8]} has no {path}.dvc ({error}).") from None
    except Exception as error:  # dvc raises PathMissingError and other DvcExceptions for a file not in that commit
        raise RegistryError(f"{reference}: commit {commit[:8]} has no DVC-tracked bundle {path}: {error}") from None
    stage = parsed.get("stage")
    return ModelVersion(parsed["name"], str(parsed["version"]), commit, str(path), md5, record, stage)


def parse_record(message: str) -> dict[str, Any]:
    """The JSON object after the first blank line of a registration message; ``{}`` for a plain ``gto`` tag."""
    _, _, body = message.partition("\n\n")
    try:
        record = json.loads(body) if body.strip() else {}
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def _declared_path(repo: Path | str, name: str, commit: str) -> str:
    import gto.api

    with gto_errors():
        artifact = gto.api.describe(str(repo), name, rev=commit)
    if artifact is None or not artifact.path:
        raise RegistryError(f"{name} has no path in artifacts.yaml at commit {commit[:8]}.")
    return str(artifact.path)


def fetch(model: ModelVersion, directory: Path, *, repo: Path | str = ".") -> Path:
    """The bundle of ``model`` in ``directory`` (reused while its checksum matches), from the DVC cache or remote;
    its md5 and SHA-256 must be the registered ones."""
    target = directory / f"{model.name.replace('/', '-')}-{model.version}{Path(model.path).suffix}"
    if target.is_file() and _matches(model, *_checksums(target)):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as partial:
        _download(model, partial, repo)
        md5, sha256 = _checksums(partial)
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


def _checksums(path: Path) -> tuple[str, str]:
    md5, sha256 = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            md5.update(chunk)
            sha256.update(chunk)
    return md5.hexdigest(), sha256.hexdigest()


def remote_url(model: ModelVersion, *, repo: Path | str = ".", remote: str | None = None) -> str:
    """Where the DVC remote keeps ``model``'s bundle (``gs://...`` for the GCS remote): a ``MODEL_URI``."""
    import dvc.api

    try:
        return str(dvc.api.get_url(model.path, repo=str(repo), rev=model.commit, remote=remote))
    except Exception as error:  # DvcException subclasses, e.g. an unknown remote name
        raise RegistryError(f"{model.reference}: no URL on remote {remote or '(default)'}: {error}") from None


# --- the accuracy check ----------------------------------------------------------------------------


def check(
    reference: str, overrides: list[str] | None = None, *, repo: Path | str = ".", tolerance: float = 0.0
) -> tuple[float, float]:
    """Evaluate the registered bundle on its data's test split (``python -m image_classifier.evaluate``, data from
    the bundle's record unless ``overrides`` name it); the accuracy measured and the one registered. Raises
    when the measured accuracy is below the registered one by more than ``tolerance``."""
    model = resolve(reference, repo=repo)
    registered = model.metrics.get(ACCURACY)
    if registered is None:
        raise RegistryError(f"{model.reference} has no registered {ACCURACY} to check against.")
    overrides = list(overrides or [])
    if not any(item.split("=", 1)[0].lstrip("+") == "data" for item in overrides):
        overrides.insert(0, f"data={model.record.get('data', 'shapes')}")
    with tempfile.TemporaryDirectory(prefix="registry-check-") as scratch:
        bundle = fetch(model, Path(scratch), repo=repo)
        measured = evaluate_accuracy(bundle, Path(scratch) / "evaluate", overrides)
    passed = measured + tolerance >= registered
    result = {"passed": passed, "measured": measured, "registered": registered, "tolerance": tolerance}
    record_check(repo_root(repo), model.reference, result)
    if not passed:
        raise RegistryError(
            f"{model.reference}: accuracy {measured:.4f} on the pinned data is below the registered {registered:.4f}."
        )
    return measured, registered


def evaluate_accuracy(bundle: Path, output_dir: Path, overrides: list[str]) -> float:
    """The test accuracy ``python -m image_classifier.evaluate`` measures for ``bundle``."""
    command = [sys.executable, "-m", "image_classifier.evaluate", f"checkpoint={bundle}", *overrides]
    command += ["logger=none", f"hydra.run.dir={output_dir}", f"paths.output_dir={output_dir}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise RegistryError(f"Evaluation failed: {lines[-1] if lines else done.returncode}")
    return float(json.loads((output_dir / "metrics.json").read_text())["accuracy"])


# --- Weights & Biases ------------------------------------------------------------------------------


def wandb_online() -> bool:
    """W&B is online when a key is in the environment and ``WANDB_MODE`` does not say otherwise."""
    mode = os.environ.get("WANDB_MODE", "online").strip().lower()
    return bool(os.environ.get("WANDB_API_KEY")) and mode not in ("offline", "disabled", "dryrun")


def link_to_wandb(model: ModelVersion, bundle: Path) -> str | None:
    """Log the bundle as a W&B model artifact and link it to the W&B registry (``WANDB_REGISTRY``, default
    ``wandb-registry-model/NAME``) under the GTO version; ``None`` (nothing done) when W&B is offline."""
    if not wandb_online():
        log.info("W&B is offline (no WANDB_API_KEY, or WANDB_MODE=offline): %s not linked", model.reference)
        return None
    import wandb

    target = os.environ.get("WANDB_REGISTRY") or f"wandb-registry-model/{model.name}"
    try:
        with wandb.init(project=os.environ.get("WANDB_PROJECT", "image-classifier"), job_type="register") as run:
            artifact = wandb.Artifact(model.name.replace("/", "-"), type="model", metadata=model.record)
            artifact.add_file(str(bundle), name=Path(model.path).name)
            run.log_artifact(artifact, aliases=[model.version])
            run.link_artifact(artifact, target, aliases=[model.version])
    except Exception as error:  # the tag exists already: a W&B failure is reported, not raised
        log.warning("W&B: %s not linked to %s: %s", model.reference, target, str(error).splitlines()[0])
        return None
    return target


# --- command line ----------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.registry", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=".", help="the registry's git repository (default: the current directory)")
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("register", help="record a bundle as a new version")
    add.add_argument("--checkpoint", required=True, help="the bundle (best.pt)")
    add.add_argument("--name", default=DEFAULT_NAME, help=f"artifact name (default {DEFAULT_NAME})")
    add.add_argument("--version", help="vX.Y.Z (default: the next one)")
    add.add_argument("--remote", help="DVC remote to push the bundle to (default: the repository's)")
    add.add_argument("--no-push", action="store_true", help="keep the bundle in the local DVC cache only")
    add.add_argument("--push-tag", action="store_true", help="push the version tag to git's origin")
    stage = commands.add_parser("promote", help="assign a stage to a version")
    stage.add_argument("name")
    stage.add_argument("--version", required=True)
    stage.add_argument("--stage", required=True, choices=STAGES)
    stage.add_argument("--push-tag", action="store_true", help="push the stage tag to git's origin")
    show = commands.add_parser("resolve", help="print the version a reference names, as JSON")
    show.add_argument("reference", help="NAME@v1.2.3, NAME#prod, NAME@latest or a tag name")
    show.add_argument("--out", help="also fetch the bundle into this directory")
    show.add_argument("--remote-url", metavar="REMOTE", nargs="?", const="", help="also give the bundle's remote URL")
    test = commands.add_parser("check", help="evaluate a version; fail when below its registered accuracy")
    test.add_argument("reference")
    test.add_argument("overrides", nargs="*", help="evaluate overrides for the pinned data, e.g. data.root=data")
    test.add_argument("--tolerance", type=float, default=0.0, help="accuracy it may fall short by (default 0)")
    return parser


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "register":
        model = register(
            args.checkpoint,
            repo=args.repo,
            name=args.name,
            version=args.version,
            remote=args.remote,
            push=not args.no_push,
            push_tag=args.push_tag,
        )
        print(f"Registered {model.reference} (commit {model.commit[:8]}, sha256 {model.sha256}).")
    elif args.command == "promote":
        model = promote(args.name, args.version, args.stage, repo=args.repo, push_tag=args.push_tag)
        print(f"{model.reference} is now in {args.stage}.")
    elif args.command == "resolve":
        print(json.dumps(describe(args.reference, args.repo, args.out, args.remote_url), indent=2))
    else:
        measured, registered = check(args.reference, args.overrides, repo=args.repo, tolerance=args.tolerance)
        print(f"accuracy {measured:.4f} on the pinned data, registered {registered:.4f}: ok")
    return 0


def describe(reference: str, repo: str, out: str | None, remote: str | None) -> dict[str, Any]:
    """What ``resolve`` prints: the version, where its bundle is, and optionally its local copy and remote URL."""
    model = resolve(reference, repo=repo)
    info: dict[str, Any] = {"reference": model.reference, **asdict(model)}
    if out:
        info["local_path"] = str(fetch(model, Path(out), repo=repo).resolve())
    if remote is not None:
        info["remote_url"] = remote_url(model, repo=repo, remote=remote or None)
    return info


if __name__ == "__main__":
    sys.exit(main())
