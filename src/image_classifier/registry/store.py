"""Where the registry keeps its versions: git (commits and tags), DVC (the bundles' bytes) and GTO (the artifact
index, version and stage tags), each behind a function whose failure is a one-line :class:`RegistryError`."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from image_classifier.errors import UserError
from image_classifier.subprocesses import run_checked


class RegistryError(UserError):
    """A registry operation that cannot be done: a bad reference, a missing bundle, a check that failed."""


def git(root: Path | str, *args: str, stdin: str | None = None) -> str:
    """Run git in ``root`` (``stdin`` as its input); its stdout. A failure is a :class:`RegistryError` with git's
    own line."""
    failure = f"git {args[0]} failed in {root}"
    done = run_checked(["git", *args], failure, error=RegistryError, cwd=root, timeout=120, input=stdin)
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


def commit_paths(root: Path, paths: list[str], message: str) -> None:
    """Commit ``paths`` (those that exist) and nothing else that is staged; no commit when they are unchanged."""
    present = [path for path in paths if (root / path).exists()]
    git(root, "add", "--", *present)
    changed = subprocess.run(["git", "diff", "--cached", "--quiet", "--", *present], cwd=root, check=False)
    if changed.returncode != 0:
        git(root, "commit", "-q", "-m", message, "--", *present)


@contextlib.contextmanager
def gto_errors() -> Iterator[None]:
    """GTO's exceptions (and those of the git library under it) as one-line :class:`RegistryError` s."""
    from gto.exceptions import GTOException
    from scmrepo.exceptions import SCMError

    try:
        yield
    except (GTOException, SCMError) as error:
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


def declared_path(repo: Path | str, name: str, commit: str) -> str:
    """The path ``artifacts.yaml`` declared for ``name`` at ``commit``."""
    import gto.api

    with gto_errors():
        artifact = gto.api.describe(str(repo), name, rev=commit)
    if artifact is None or not artifact.path:
        raise RegistryError(f"{name} has no path in artifacts.yaml at commit {commit[:8]}.")
    return str(artifact.path)


def dvc_md5(text: str, source: str) -> str:
    """The md5 a ``.dvc`` file records for its single output."""
    try:
        (out,) = yaml.safe_load(text)["outs"]
        return str(out["md5"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        raise RegistryError(f"{source} is not a .dvc file with one output.") from None
