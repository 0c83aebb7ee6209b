"""The server imports only what it serves: no Hydra, DVC, GTO, process-group or registry code, from importing the
app to answering with a checkpoint bundle; and no torch until a bundle needs it (the ONNX install has none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

NEVER_SERVED = (
    "hydra",
    "dvc",
    "gto",
    "image_classifier.distributed",
    "image_classifier.process_group",
    "image_classifier.registry",
)

LOADED = """
def loaded(names):
    return sorted({n for n in names for m in list(sys.modules) if m == n or m.startswith(n + ".")})
"""

IMPORT_THE_SERVER = f"""
import json, sys
{LOADED}
import image_classifier.api.__main__, image_classifier.api.app, image_classifier.api.model_process
print(json.dumps(loaded({(*NEVER_SERVED, "torch")!r})))
"""

SERVE_A_BUNDLE = f"""
import json, sys
from PIL import Image
{LOADED}
from image_classifier.api.app import open_model
from image_classifier.api.backends import eval_preprocess
from image_classifier.api.settings import ServeSettings

model, batcher = open_model(ServeSettings.from_env(model_process=False))
pixels = eval_preprocess(model).pixels(Image.new("RGB", (48, 40), (200, 30, 30)))
probabilities = batcher.submit(pixels).result(timeout=120)
batcher.stop()
assert model.backend == "pytorch" and abs(float(probabilities.sum()) - 1) < 1e-4, probabilities
print(json.dumps(loaded({NEVER_SERVED!r})))
"""


def loaded_by(code: str, **env: str) -> list[str]:
    """The watched packages that ``code`` (run in a fresh interpreter) had imported when it printed them."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_server_loads_no_training_stack_and_no_torch() -> None:
    assert loaded_by(IMPORT_THE_SERVER) == []


def test_serving_a_checkpoint_bundle_loads_no_hydra_dvc_gto_or_process_group(bundle_path: Path) -> None:
    assert loaded_by(SERVE_A_BUNDLE, MODEL_PATH=str(bundle_path)) == []
