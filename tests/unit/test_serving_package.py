"""The slim serving package (serving/pyproject.toml): the project's own dependencies at the same versions, and
every module the ONNX server imports, and none of the training stack."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11's")
SERVING = REPO_ROOT / "serving" / "pyproject.toml"
TRAINING_STACK = {"torch", "torchvision", "timm", "hydra-core", "omegaconf", "dvc", "wandb", "matplotlib", "onnx"}


def load(path: Path) -> dict:
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def serving_requirements() -> list[Requirement]:
    project = load(SERVING)["project"]
    extras = project.get("optional-dependencies", {})
    texts = [*project["dependencies"], *(dep for deps in extras.values() for dep in deps)]
    return [Requirement(text) for text in texts]


def test_serving_depends_on_the_projects_own_requirements_and_no_training_stack() -> None:
    project = load(REPO_ROOT / "pyproject.toml")["project"]
    everything = [*project["dependencies"], *(d for deps in project["optional-dependencies"].values() for d in deps)]
    known = {Requirement(text).name: Requirement(text) for text in everything}
    for requirement in serving_requirements():
        assert requirement.name not in TRAINING_STACK
        assert requirement.name in known, f"{requirement.name} is not a dependency of the project"
        assert str(requirement) == str(known[requirement.name]), "serving/pyproject.toml pins differently"


def packaged_paths() -> dict[str, str]:
    """Source path (relative to the repository) -> path in the wheel."""
    include = load(SERVING)["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    return {
        str((SERVING.parent / source).resolve().relative_to(REPO_ROOT)): target for source, target in include.items()
    }


PROBE = """
import json, sys
import image_classifier.api.__main__, image_classifier.api.app, image_classifier.api.model_process
import image_classifier.api.onnx_backend, image_classifier.api.eval_transform
print(json.dumps(sorted(m.__file__ for m in list(sys.modules.values())
                        if m.__name__.startswith("image_classifier") and getattr(m, "__file__", None))))
"""


def test_the_package_holds_every_module_the_onnx_server_imports() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True)
    included = packaged_paths()
    for file in json.loads(result.stdout):
        relative = str(Path(file).resolve().relative_to(REPO_ROOT))
        assert any(relative == source or relative.startswith(source + "/") for source in included), relative
    assert all(target == source.removeprefix("src/") for source, target in included.items())


@pytest.mark.slow
def test_the_serving_wheel_builds_with_the_api_and_without_training_code(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(SERVING.parent)],
        check=True, timeout=600,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("image_classifier_serving-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"image_classifier/api/app.py", "image_classifier/api/static/index.html"} <= names
    assert not {"image_classifier/train.py", "image_classifier/model.py", "image_classifier/preprocess.py"} & names
    assert not any("__pycache__" in name for name in names)
