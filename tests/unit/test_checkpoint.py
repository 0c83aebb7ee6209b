"""Checkpoint bundles: self-describing, safe to load, written atomically."""

from __future__ import annotations

import http.server
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf

from image_classifier.checkpoint import Bundle, load_bundle, save_bundle
from image_classifier.errors import CheckpointError, ConfigError
from image_classifier.model import create_model, model_kwargs
from tests.helpers.bundles import make_bundle


def _bundle() -> Bundle:
    return make_bundle(
        ["cat", "dog", "fox"],
        crop_pct=1.0,
        config={"trainer": {"seed": 1}},
        lineage={"git_commit": "abc", "data_fingerprint": "f00"},
        metrics={"val/accuracy": 0.5},
        versions={"torch": torch.__version__},
        epoch=2,
    )


def test_round_trip_rebuilds_the_same_model_without_configs(tmp_path: Path) -> None:
    original = _bundle()
    path = save_bundle(tmp_path / "best.pt", original)
    assert torch.load(path, weights_only=True)["classes"] == ["cat", "dog", "fox"]
    loaded = load_bundle(path)
    assert loaded.classes == original.classes and loaded.input_size == (3, 32, 32)
    assert loaded.lineage["data_fingerprint"] == "f00" and loaded.epoch == 2
    x = torch.randn(1, 3, 32, 32)
    reference = create_model("baseline_cnn", num_classes=3, width=8)
    reference.load_state_dict(original.state_dict)
    with torch.no_grad():
        assert torch.equal(loaded.build_model()(x), reference.eval()(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"], "no temporary file left behind"


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_bundle(tmp_path / "nope.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="Cannot read"):
        load_bundle(broken)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not an image-classifier bundle"):
        load_bundle(tmp_path / "plain.pt")


@pytest.fixture
def weights_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every path requested of it (and answers 404)."""
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requested.append(self.path)
            self.send_error(404)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requested
    server.shutdown()
    thread.join()


def _crafted(path: Path, model_name: str, model_kwargs: dict[str, object]) -> Path:
    """A bundle as anyone could write it with ``torch.save``: valid in form, with the given model and kwargs."""
    payload = torch.load(save_bundle(path, _bundle()), weights_only=True)
    torch.save({**payload, "model_name": model_name, "model_kwargs": model_kwargs}, path)
    return path


def test_the_attack_the_loader_refuses_does_reach_out_through_timm(weights_server: tuple[str, list[str]]) -> None:
    """What a crafted bundle's kwargs do when they reach timm unchecked: timm fetches the URL."""
    url, requested = weights_server
    with pytest.raises(Exception):  # noqa: B017 (the server answers 404; what matters is that it was asked)
        overlay = {"url": f"{url}/w.pth", "hf_hub_id": None}
        timm.create_model("resnet18", pretrained=True, pretrained_cfg_overlay=overlay)
    assert requested == ["/w.pth"]


def test_a_bundle_whose_kwargs_name_a_url_is_refused_and_nothing_is_fetched(
    tmp_path: Path, weights_server: tuple[str, list[str]]
) -> None:
    url, requested = weights_server
    kwargs = {"pretrained": True, "pretrained_cfg_overlay": {"url": f"{url}/w.pth", "hf_hub_id": None}}
    crafted = _crafted(tmp_path / "crafted.pt", "resnet18", kwargs)
    with pytest.raises(CheckpointError) as refused:
        load_bundle(crafted).build_model()
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"Refusing {crafted}: 'pretrained' is a weight source")
    assert "'pretrained_cfg_overlay' is a weight source" in message
    bundle = _bundle()
    bundle.model_kwargs = kwargs  # a bundle built in memory is checked too
    with pytest.raises(CheckpointError, match="'pretrained' is a weight source"):
        bundle.build_model()
    served = subprocess.run(
        [sys.executable, "-m", "image_classifier.api", "--model", str(crafted), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode == 2 and served.stderr.startswith("error: Refusing"), served.stderr
    assert requested == [], "the server was asked for the weights"


@pytest.mark.parametrize(
    ("model_name", "kwargs", "reason"),
    [
        ("resnet18", {"checkpoint_path": "/etc/hostname"}, "'checkpoint_path' is a weight source"),
        ("resnet18", {"pretrained_cfg": {"file": "/etc/hostname"}}, "'pretrained_cfg' is a weight source"),
        ("baseline_cnn", {"weights": "/tmp/w.pt"}, "'weights' is a weight source"),
        ("resnet18", {"features_only": True}, "'features_only' is not an architecture argument"),
        ("resnet18", {"act_layer": "https://127.0.0.1:1/act"}, "is not a plain value"),
        ("resnet18", {"norm_layer": "../layers.py"}, "is not a plain value"),
        ("resnet18", {"global_pool": {"url": "x"}}, "is not a plain value"),
        ("hf-hub:timm/resnet18.a1_in1k", {}, "Unknown model 'hf-hub:timm/resnet18.a1_in1k'"),
    ],
)
def test_kwargs_that_name_weights_files_or_urls_are_refused_at_load(
    tmp_path: Path, model_name: str, kwargs: dict[str, object], reason: str
) -> None:
    with pytest.raises(CheckpointError, match=re.escape(reason)):
        load_bundle(_crafted(tmp_path / "crafted.pt", model_name, kwargs))


def test_architecture_kwargs_still_load(tmp_path: Path) -> None:
    kwargs = {"width": 8, "drop_rate": 0.1, "in_chans": 3}
    bundle = load_bundle(_crafted(tmp_path / "ok.pt", "baseline_cnn", kwargs))
    assert bundle.model_kwargs == kwargs and bundle.build_model()(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def test_training_refuses_model_kwargs_its_bundle_could_not_be_loaded_with() -> None:
    config = OmegaConf.create({"kwargs": {"checkpoint_path": "w.pt"}, "drop_rate": 0.0})
    with pytest.raises(ConfigError, match=r"model\.kwargs: 'checkpoint_path' is a weight source"):
        model_kwargs(config)
