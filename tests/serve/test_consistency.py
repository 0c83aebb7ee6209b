"""The API's predictions equal ``evaluate``'s for the same image files."""

from __future__ import annotations

import csv
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from image_classifier.data.layout import PreparedDataset
from tests.serve.conftest import SHAPES, Server


def run_evaluate(bundle: Path, shapes: PreparedDataset, out: Path) -> list[dict[str, str]]:
    data_root = shapes.root.parent.parent
    command = [
        sys.executable, "-m", "image_classifier.evaluate", f"checkpoint={bundle}", f"data.root={data_root}",
        *(f"data.generate.{key}={getattr(SHAPES, key)}" for key in ("seed", "train_per_class", "val_per_class")),
        f"data.generate.test_per_class={SHAPES.test_per_class}",
        "trainer.device=cpu", "logger=none", f"hydra.run.dir={out}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("server_kind", ["server", "in_process_server"])
def test_api_predictions_match_evaluate(
    server_kind: str, bundle_path: Path, shapes: PreparedDataset, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """With the model in its own process (the default) or in the server's."""
    server: Server = request.getfixturevalue(server_kind)
    expected = run_evaluate(bundle_path, shapes, tmp_path / "evaluate")
    assert len(expected) == 2 * len(shapes.classes)

    def predict(row: dict[str, str]) -> dict[str, object]:
        path = Path(row["path"])
        with server.client() as http:
            response = http.post("/predict", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
        assert response.status_code == 200, response.text
        return response.json()["predictions"][0]

    with ThreadPoolExecutor(8) as pool:  # concurrent, so that predictions are micro-batched
        served = list(pool.map(predict, expected))
    assert [p["label"] for p in served] == [row["prediction"] for row in expected]
    for prediction, row in zip(served, expected, strict=True):
        assert prediction["confidence"] == pytest.approx(float(row["confidence"]), abs=2e-6)
