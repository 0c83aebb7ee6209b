"""Render a deploy manifest: its ``${NAME}`` placeholders filled from ``deploy/images.env``, the environment
and ``NAME=VALUE`` arguments (later ones win). A placeholder left without a value is an error.

    python deploy/render.py deploy/cloudrun/service.yaml IMAGE_TAG=sha-... MODEL_URI=gs://... > service.yaml
    python deploy/render.py deploy/pytorchjob.yaml | kubectl apply -f -
    python deploy/render.py --env >> "$GITHUB_ENV"        # the image names, for a workflow

``OWNER``, which ``images.env`` puts in ``IMAGE_REPOSITORY``, is the GitHub owner in lower case (GHCR's rule), worked
out at run time: ``OWNER`` if given, else ``GITHUB_REPOSITORY_OWNER`` (set in every workflow run, so a fork
publishes to its own namespace), else the owner in ``git remote get-url origin``.

Besides the file's values: ``TRAIN_IMAGE``, ``API_IMAGE`` and ``API_ONNX_IMAGE``
(``IMAGE_REPOSITORY/image-classifier-{train,api,api-onnx}``), ``GCP_IMAGE_REPOSITORY`` (``IMAGE_REPOSITORY`` through
``GCP_IMAGE_MIRROR``), ``GCP_TRAIN_IMAGE``, ``GCP_API_IMAGE``, ``GCP_API_ONNX_IMAGE``, ``IMAGE_TAG`` (``latest``
unless given), and ``GCP_SERVING_IMAGE``: the image that serves ``MODEL_URI``, the slim ``api-onnx`` one for an ONNX
export (``MODEL_FORMAT=onnx``, or ``auto``, the default, with a ``MODEL_URI`` ending in ``.onnx``), else ``api``.
Needs only the standard library.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

IMAGES_ENV = Path(__file__).with_name("images.env")
IMAGE_NAMES = {
    "TRAIN_IMAGE": "image-classifier-train",
    "API_IMAGE": "image-classifier-api",
    "API_ONNX_IMAGE": "image-classifier-api-onnx",
}
MODEL_FORMATS = ("auto", "bundle", "onnx")
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def read_env(path: Path) -> dict[str, str]:
    """``NAME=VALUE`` lines of ``path``; ``#`` starts a comment line."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise SystemExit(f"error: {path}:{number} is not NAME=VALUE: {line!r}")
        values[name] = value
    return values


def github_owner() -> str | None:
    """The repository's GitHub owner: ``GITHUB_REPOSITORY_OWNER``, else the owner in origin's URL."""
    if owner := os.environ.get("GITHUB_REPOSITORY_OWNER"):
        return owner
    origin = subprocess.run(
        ["git", "remote", "get-url", "origin"], cwd=IMAGES_ENV.parent, capture_output=True, text=True, check=False
    ).stdout.strip()
    found = re.search(r"github\.com[:/]([^/]+)/", origin)
    return found.group(1) if found else None


def variables(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Every value a manifest can use: the file's, the derived image names, then the environment and overrides."""
    values = {"IMAGE_TAG": "latest", **read_env(IMAGES_ENV)}
    values |= {name: os.environ[name] for name in os.environ if PLACEHOLDER.fullmatch(f"${{{name}}}")}
    values |= overrides or {}
    owner = values.get("OWNER") or github_owner()
    if owner:
        values["OWNER"] = owner.lower()
    values["IMAGE_REPOSITORY"] = render(values["IMAGE_REPOSITORY"], values)
    repository, mirror = values["IMAGE_REPOSITORY"].rstrip("/"), values["GCP_IMAGE_MIRROR"].rstrip("/")
    values.setdefault("GCP_IMAGE_REPOSITORY", f"{mirror}/{repository.split('/', 1)[1]}")
    for name, image in IMAGE_NAMES.items():
        values.setdefault(name, f"{repository}/{image}")
        values.setdefault(f"GCP_{name}", f"{values['GCP_IMAGE_REPOSITORY']}/{image}")
    onnx = model_format(values.get("MODEL_FORMAT", "auto"), values.get("MODEL_URI", "")) == "onnx"
    values.setdefault("GCP_SERVING_IMAGE", values["GCP_API_ONNX_IMAGE" if onnx else "GCP_API_IMAGE"])
    return values


def model_format(given: str, model_uri: str) -> str:
    """``bundle`` or ``onnx``: ``given``, or for ``auto`` (or empty) what ``model_uri``'s name ends with."""
    given = given or "auto"
    if given not in MODEL_FORMATS:
        raise SystemExit(f"error: MODEL_FORMAT={given!r} is not one of {', '.join(MODEL_FORMATS)}.")
    if given != "auto":
        return given
    return "onnx" if model_uri.split("?", 1)[0].endswith(".onnx") else "bundle"


def render(text: str, values: dict[str, str]) -> str:
    """``text`` with each ``${NAME}`` replaced; raises listing the names that have no value."""
    missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
    if missing:
        raise SystemExit(f"error: no value for {', '.join(missing)}: pass NAME=VALUE or set it in the environment.")
    return PLACEHOLDER.sub(lambda match: values[match.group(1)], text)


def main(argv: list[str]) -> int:
    assignments = [arg for arg in argv if "=" in arg]
    files = [arg for arg in argv if "=" not in arg and arg != "--env"]
    values = variables(dict(arg.split("=", 1) for arg in assignments))
    if "--env" in argv:
        names = ["IMAGE_REPOSITORY", "GCP_IMAGE_REPOSITORY", *IMAGE_NAMES, *(f"GCP_{name}" for name in IMAGE_NAMES)]
        print("\n".join(f"{name}={values[name]}" for name in names))
    for file in files:
        sys.stdout.write(render(Path(file).read_text(), values))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
