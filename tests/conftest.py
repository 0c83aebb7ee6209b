"""Shared fixtures: composed configs and a tiny embedded dataset."""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hydra import compose as compose_hydra
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, open_dict

from image_classifier.config.entry import config_dir
from image_classifier.data.shapes import ShapesSpec, generate_shapes
from tests.helpers.ci_skips import pytest_runtest_makereport  # noqa: F401 (the hook, registered by its name here)
from tests.helpers.tools import require_shared_data

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

TINY_SHAPES = ShapesSpec(seed=7, train_per_class=8, val_per_class=4, test_per_class=4, min_side=32, max_side=48)
TINY_DATA_OVERRIDES = [
    "data.batch_size=16",
    "data.num_workers=0",
    f"data.generate.train_per_class={TINY_SHAPES.train_per_class}",
    f"data.generate.val_per_class={TINY_SHAPES.val_per_class}",
    f"data.generate.test_per_class={TINY_SHAPES.test_per_class}",
    f"data.generate.seed={TINY_SHAPES.seed}",
    f"+data.generate.min_side={TINY_SHAPES.min_side}",
    f"+data.generate.max_side={TINY_SHAPES.max_side}",
]
TINY_OVERRIDES = [
    *TINY_DATA_OVERRIDES,
    "data.image_size=32",
    "trainer.max_epochs=1",
    "trainer.device=cpu",
    "logger=none",
]


def pytest_configure(config: pytest.Config) -> None:
    """A shell that starts the tests in the background (``invoke test &``) leaves Ctrl-C ignored in them, and the
    tests that interrupt a run send SIGINT: give this process Python's handler back (the processes it starts then
    get the default disposition, and Python's handler in turn)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _own_wandb_service_per_test() -> Iterator[None]:
    """A test that ran W&B in this process leaves its service's address in ``WANDB_SERVICE``; tear it down, so
    that the training processes later tests start (torchrun workers among them) each start their own."""
    yield
    if "wandb" in sys.modules and os.environ.get("WANDB_SERVICE"):
        sys.modules["wandb"].teardown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-photo samples beside the project; tests using it skip where it is absent."""
    return require_shared_data(SHARED_DATA)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving a fresh directory: ``(base URL, directory)``."""
    served = tmp_path / "served"
    served.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root whose processed/shapes holds a tiny generated dataset (160 images)."""
    root = tmp_path_factory.mktemp("data")
    generate_shapes(root / "processed" / "shapes", TINY_SHAPES)
    return root


def compose(config_name: str = "train", overrides: list[str] | None = None, *, output_dir: Path) -> DictConfig:
    """Compose ``train`` or ``evaluate`` as the entry points would, with outputs in ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose_hydra(config_name=config_name, overrides=overrides or [], return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


ComposeFn = Callable[..., DictConfig]


@pytest.fixture
def compose_config(tmp_path: Path) -> ComposeFn:
    """:func:`compose` with outputs in ``tmp_path/run`` unless ``output_dir`` is given."""

    def _compose(
        config_name: str = "train", overrides: list[str] | None = None, output_dir: Path | None = None
    ) -> DictConfig:
        return compose(config_name, overrides, output_dir=output_dir or tmp_path / "run")

    return _compose
