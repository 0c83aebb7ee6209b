"""The accuracy gate's verdicts, recorded on the registered versions they were measured for.

``registry check`` writes its result as a git note (``refs/notes/registry-checks``) on the version's tag object
(``NAME@vX.Y.Z``): passed or not, the accuracy measured and the one registered. ``promote`` reads it back and
assigns a stage only to a version that passed; resolving ``NAME#STAGE`` skips versions that failed. Notes travel
with ``git push origin refs/notes/registry-checks``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from image_classifier.registry.store import RegistryError, git

NOTES_REF = "refs/notes/registry-checks"


def _tag_object(root: Path | str, tag: str) -> str | None:
    try:
        return git(root, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}") or None
    except RegistryError:
        return None


def record_check(root: Path | str, tag: str, result: dict[str, Any]) -> bool:
    """Record ``result`` (``passed``, ``measured``, ``registered``, ...) on ``tag``; False when there is no such tag."""
    target = _tag_object(root, tag)
    if target is None:
        return False
    try:
        git(root, "notes", "--ref", NOTES_REF, "add", "-f", "-F", "-", target, stdin=json.dumps(result))
    except RegistryError:
        return False
    return True


def recorded_check(root: Path | str, tag: str) -> dict[str, Any] | None:
    """The check result recorded on ``tag``, or None when it was never checked."""
    target = _tag_object(root, tag)
    if target is None:
        return None
    try:
        result = json.loads(git(root, "notes", "--ref", NOTES_REF, "show", target))
    except (RegistryError, json.JSONDecodeError):
        return None
    return result if isinstance(result, dict) else None


def failed(root: Path | str, tag: str) -> bool:
    """Whether ``tag``'s version was checked and did not pass."""
    result = recorded_check(root, tag)
    return result is not None and not result.get("passed", False)
