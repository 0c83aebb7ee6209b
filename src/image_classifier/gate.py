"""The accuracy gate's result, recorded on the registered version it was measured for.

``registry check`` writes its result as a git note (``refs/notes/registry-checks``) on the version's tag object
(``NAME@vX.Y.Z``): passed or not, the accuracy measured and the one registered. ``promote`` reads it back and
assigns a stage only to a version that passed; resolving ``NAME#STAGE`` skips versions that failed. Notes travel
with ``git push origin refs/notes/registry-checks``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

NOTES_REF = "refs/notes/registry-checks"


def _git(root: Path | str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args], cwd=root, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def _tag_object(root: Path | str, tag: str) -> str | None:
    done = _git(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}")
    return done.stdout.strip() or None


def record_check(root: Path | str, tag: str, result: dict[str, Any]) -> bool:
    """Record ``result`` (``passed``, ``measured``, ``registered``, ...) on ``tag``; False when there is no such tag."""
    target = _tag_object(root, tag)
    if target is None:
        return False
    done = _git(root, "notes", "--ref", NOTES_REF, "add", "-f", "-F", "-", target, stdin=json.dumps(result))
    return done.returncode == 0


def recorded_check(root: Path | str, tag: str) -> dict[str, Any] | None:
    """The check result recorded on ``tag``, or None when it was never checked."""
    target = _tag_object(root, tag)
    if target is None:
        return None
    done = _git(root, "notes", "--ref", NOTES_REF, "show", target)
    if done.returncode != 0:
        return None
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError:
        return None
    return result if isinstance(result, dict) else None


def failed(root: Path | str, tag: str) -> bool:
    """Whether ``tag``'s version was checked and did not pass."""
    result = recorded_check(root, tag)
    return result is not None and not result.get("passed", False)
