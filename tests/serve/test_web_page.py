"""The web page at ``/`` in a real browser: headless Debian Chromium driven by Selenium, against real uvicorn servers.

``IC_WEB_SCREENSHOT=docs/images/web-page.png`` also saves the page, with generated images only, to that path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from PIL import Image, ImageDraw

from image_classifier.data.layout import PreparedDataset
from image_classifier.export import export
from tests.helpers.tools import missing, which
from tests.serve.conftest import IMAGE_SIZE, LIMITS, Server, start_server, stop_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True}
DESKTOP = (1280, 960)
TOP_K = 5  # the page's default
WAIT_S = 60


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    chromium, driver_path = which("chromium", "chromium-browser", "google-chrome"), which("chromedriver")
    if chromium is None:
        missing("chromium")
    if driver_path is None:
        missing("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def photos(shared_data: Path) -> list[Path]:
    """Two real Animals-V2 test photos."""
    folder = shared_data / "animals-v2" / "Testing Data" / "Testing Data"
    found = [sorted((folder / name).glob("*.jp*g"))[:1] for name in ("Cat", "Zebra")]
    if not all(found):
        missing("shared-data", f"no Animals-V2 test photos under {folder}")
    return [paths[0] for paths in found]


def generated_image(path: Path, shape: str, colour: tuple[int, int, int]) -> Path:
    """A 256 px synthetic picture: a shape on a gradient."""
    image = Image.linear_gradient("L").resize((256, 256)).convert("RGB")
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse((48, 48, 208, 208), fill=colour)
    else:
        draw.polygon([(128, 32), (224, 216), (32, 216)], fill=colour)
    image.save(path)
    return path


def open_page(driver: Any, server: Server) -> None:
    """Load the page and wait until it shows the model's metadata."""
    driver.get(f"{server.url}/")
    WebDriverWait(driver, WAIT_S).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model-facts dd"))


def upload(driver: Any, *paths: Path) -> list[WebElement]:
    """Pick ``paths`` in the file input; the result cards once none is pending."""
    driver.find_element(By.ID, "files").send_keys("\n".join(str(path) for path in paths))

    def settled(d: Any) -> list[WebElement] | bool:
        cards = d.find_elements(By.CSS_SELECTOR, "#results .result")
        return len(cards) == len(paths) and all(c.get_attribute("data-state") != "pending" for c in cards) and cards

    return WebDriverWait(driver, WAIT_S).until(settled)


def api_prediction(server: Server, path: Path, media_type: str = "image/jpeg") -> dict[str, Any]:
    with server.client() as http:
        response = http.post(
            "/predict", files={"file": (path.name, path.read_bytes(), media_type)}, params={"top_k": TOP_K}
        )
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def _fraction(row: WebElement) -> float:
    """How much of its track a bar fills, as rendered."""
    return (
        row.find_element(By.CSS_SELECTOR, ".bar").size["width"]
        / row.find_element(By.CSS_SELECTOR, ".bar-track").size["width"]
    )


def shown_prediction(card: WebElement) -> dict[str, Any]:
    """What a result card shows: label, bar labels and widths, latency, whether its image rendered."""
    bars = card.find_elements(By.CSS_SELECTOR, ".bar-row")
    return {
        "state": card.get_attribute("data-state"),
        "label": card.find_element(By.CSS_SELECTOR, ".label").text,
        "bars": [row.get_attribute("data-label") for row in bars],
        "fractions": [_fraction(row) for row in bars],
        "latency": card.find_element(By.CSS_SELECTOR, ".latency").text,
        "image_width": card.find_element(By.CSS_SELECTOR, ".thumb").get_property("naturalWidth"),
    }


def assert_shows(card: WebElement, expected: dict[str, Any]) -> None:
    shown = shown_prediction(card)
    assert shown["state"] == "done"
    assert shown["label"] == expected["label"]
    assert shown["bars"] == list(expected["top_k"])
    assert shown["fractions"] == pytest.approx(list(expected["top_k"].values()), abs=0.02)
    assert re.fullmatch(r"Latency: \d+ ms", shown["latency"])
    assert shown["image_width"] > 0


def test_page_classifies_real_photos_as_the_api_does(
    browser: Any, server: Server, photos: list[Path], shapes: PreparedDataset
) -> None:
    open_page(browser, server)
    cards = upload(browser, *photos)
    for card, photo in zip(cards, photos, strict=True):
        assert card.find_element(By.CSS_SELECTOR, ".filename").text == photo.name
        assert_shows(card, api_prediction(server, photo))
    facts = browser.find_element(By.ID, "model-facts").text
    assert "baseline_cnn" in facts and "pytorch" in facts and f"{IMAGE_SIZE} × {IMAGE_SIZE} px" in facts
    chips = [chip.text for chip in browser.find_elements(By.CSS_SELECTOR, "#classes li")]
    assert chips == shapes.classes
    browser.find_element(By.CSS_SELECTOR, "#lineage-box summary").click()
    assert shapes.fingerprint in browser.find_element(By.ID, "lineage").text
    assert "Ready: baseline_cnn" in browser.find_element(By.ID, "health").text


@pytest.mark.parametrize(
    ("name", "content", "media_type", "status"),
    [
        ("notes.txt", b"just some text, not an image\n", "text/plain", 415),
        ("junk.png", b"not an image at all", "image/png", 400),
        ("huge.png", b"\0" * (int(LIMITS["IC_MAX_UPLOAD_BYTES"]) + 1000), "image/png", 413),
    ],
    ids=["text-file-415", "undecodable-400", "too-large-413"],
)
def test_page_shows_the_api_error_reason(
    browser: Any, server: Server, tmp_path: Path, name: str, content: bytes, media_type: str, status: int
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with server.client() as http:
        response = http.post("/predict", files={"file": (name, content, media_type)})
    assert response.status_code == status
    open_page(browser, server)
    (card,) = upload(browser, path)
    assert card.get_attribute("data-state") == "error"
    assert card.find_element(By.CSS_SELECTOR, ".error").text == f"{response.json()['detail']} (HTTP {status})"
    assert not card.find_elements(By.CSS_SELECTOR, ".bar-row")


@pytest.fixture
def phone(browser: Any) -> Iterator[Any]:
    """The browser emulating a 390 x 844 phone screen."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        yield browser
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_page_fits_a_phone_screen(phone: Any, server: Server, photos: list[Path]) -> None:
    open_page(phone, server)
    (card,) = upload(phone, photos[0])
    assert card.get_attribute("data-state") == "done"
    width, height, scroll_width = phone.execute_script(
        "return [window.innerWidth, window.innerHeight, document.documentElement.scrollWidth]"
    )
    assert (width, height) == (PHONE["width"], PHONE["height"])  # the viewport meta tag is honoured
    assert scroll_width <= width, "the page scrolls sideways on a phone"
    box = phone.execute_script("return arguments[0].getBoundingClientRect().toJSON()", card)
    assert box["left"] >= 0 and box["right"] <= width
    assert box["top"] < height, "the result is below the first screen"
    for selector in (".label", ".bar-row", "#model-facts"):
        element = phone.find_element(By.CSS_SELECTOR, f"#results {selector}" if selector[0] == "." else selector)
        right = phone.execute_script("return arguments[0].getBoundingClientRect().right", element)
        assert right <= width, f"{selector} overflows the screen"


@pytest.fixture(scope="module")
def onnx_server(bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The API serving an ONNX export of the bundle, with the model in a child process."""
    path = tmp_path_factory.mktemp("web-onnx") / "model.onnx"
    export(bundle_path, path)
    running = start_server(path, tmp_path_factory.mktemp("web-onnx-server"), **LIMITS)
    yield running
    stop_server(running)


def kill_model_process(server: Server) -> None:
    children = psutil.Process(server.process.pid).children()
    (model,) = [child for child in children if "spawn_main" in " ".join(child.cmdline())]
    model.kill()
    model.wait(timeout=10)


def test_page_works_with_onnx_and_shows_a_dead_model_as_503(browser: Any, onnx_server: Server, tmp_path: Path) -> None:
    images = [
        generated_image(tmp_path / "generated-circle.png", "circle", (220, 60, 40)),
        generated_image(tmp_path / "generated-triangle.png", "triangle", (40, 90, 220)),
    ]
    open_page(browser, onnx_server)
    assert "onnxruntime" in browser.find_element(By.ID, "model-facts").text
    cards = upload(browser, *images)
    for card, image in zip(cards, images, strict=True):
        assert_shows(card, api_prediction(onnx_server, image, "image/png"))
    if target := os.environ.get("IC_WEB_SCREENSHOT"):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(target)
    kill_model_process(onnx_server)
    with httpx.Client(base_url=onnx_server.url, timeout=30) as http:
        WebDriverWait(http, 10).until(lambda client: client.get("/health").status_code == 503)
        reason = http.get("/health").json()["detail"]
    open_page(browser, onnx_server)
    assert browser.find_element(By.ID, "health").text == f"Unavailable: {reason} (HTTP 503)"
    (card,) = upload(browser, images[0])
    assert card.get_attribute("data-state") == "error"
    error = card.find_element(By.CSS_SELECTOR, ".error").text
    assert error.endswith("(HTTP 503)") and "model process exited" in error
