"""The system tools tests need, where each comes from, and the one list of skips CI allows.

Outside CI a test whose tool is missing skips with what to install. Under ``CI=true`` (GitHub Actions sets it,
and ``.ci/run`` runs there) it fails instead, naming the package: ``.ci/install-system-deps`` installs them, so a
missing one is a broken CI set-up, never a silently green job. The only exceptions are :data:`ALLOWED_CI_SKIPS`;
``tests/conftest.py`` turns every other skip under ``CI=true`` into a failure, whatever raised it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest


@dataclass(frozen=True)
class Tool:
    """A tool: what it is and the command that installs it."""

    what: str
    install: str


TOOLS = {
    "chromium": Tool("Chromium (or Google Chrome)", "apt-get install chromium"),
    "chromedriver": Tool("chromedriver", "apt-get install chromium-driver"),
    "promtool": Tool("promtool", "apt-get install prometheus"),
    "netns": Tool("ip netns and unshare", "apt-get install iproute2 util-linux (and run as root)"),
    "docker": Tool("a running Docker daemon", "apt-get install docker.io, then start dockerd"),
    "docker-compose": Tool("docker compose", "Docker's compose plugin, or apt-get install docker-compose"),
    "shared-data": Tool("the real-photo samples at ../shared/data", "put the samples beside the project"),
}


@dataclass(frozen=True)
class AllowedSkip:
    """A skip CI accepts, and why: allowed everywhere, or only where ``only_where`` (an environment variable) is
    ``true``."""

    reason: str
    only_where: str = ""

    def applies(self) -> bool:
        return not self.only_where or os.environ.get(self.only_where, "").lower() == "true"


ALLOWED_CI_SKIPS = {
    "cuda": AllowedSkip("CI runners have no GPU: the CUDA paths run where one is (trainer.device=cuda)"),
    "actionlint": AllowedSkip(
        "its pip package downloads the binary from GitHub releases, which only GitHub's runners reach; "
        "lint.yml runs it there"
    ),
    "shared-data": AllowedSkip(
        "the real-photo samples are Kaggle and CIFAR downloads that are not redistributed with the repository, "
        "so GitHub's runners do not have them; every other CI has them at ../shared/data",
        only_where="GITHUB_ACTIONS",
    ),
}
ALLOWED_PREFIX = "allowed in CI"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(tool: str, detail: str = "") -> NoReturn:
    """Skip for want of ``tool`` (a :data:`TOOLS` key), or under ``CI=true`` fail, naming what installs it."""
    found = TOOLS[tool]
    message = f"{found.what} is not available{f' ({detail})' if detail else ''}: {found.install}"
    if tool in ALLOWED_CI_SKIPS and ALLOWED_CI_SKIPS[tool].applies():
        pytest.skip(allowed_reason(tool, message))
    if in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def allowed_reason(key: str, detail: str = "") -> str:
    """The reason of a skip in :data:`ALLOWED_CI_SKIPS`: the conftest lets it through under ``CI=true``."""
    return f"{ALLOWED_PREFIX} ({key}: {ALLOWED_CI_SKIPS[key].reason}){f': {detail}' if detail else ''}"


def is_allowed(reason: str) -> bool:
    """Whether a skip's reason names an entry of :data:`ALLOWED_CI_SKIPS` that applies here."""
    for key, allowed in ALLOWED_CI_SKIPS.items():
        if reason.startswith(f"{ALLOWED_PREFIX} ({key}: ") and allowed.applies():
            return True
    return False


def which(*names: str) -> str | None:
    """The first of ``names`` on PATH."""
    return next((path for name in names if (path := shutil.which(name))), None)


def require_docker_daemon() -> None:
    """Return when ``docker info`` answers; otherwise :func:`missing`."""
    if shutil.which("docker") is None:
        missing("docker", "no docker command")
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        missing("docker", "docker info fails: no daemon is running (bash ../shared/tools/docker-up.sh here)")


def require_shared_data(path: Path) -> Path:
    if not path.is_dir():
        missing("shared-data", f"not found at {path}")
    return path
