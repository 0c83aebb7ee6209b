"""The embedded dataset: deterministic, in the prepared layout, and not solvable by colour alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf
from PIL import Image

from image_classifier.data.__main__ import main
from image_classifier.data.layout import load_prepared_dataset
from image_classifier.data.loaders import open_dataset
from image_classifier.data.shapes import SHAPE_CLASSES, ShapesSpec, generate_shapes, shapes_spec
from image_classifier.data.sources import SOURCES, prepare_if_needed
from image_classifier.errors import ConfigError, UserError

SPEC = ShapesSpec(seed=3, train_per_class=6, val_per_class=2, test_per_class=2, min_side=32, max_side=64)


def test_layout_counts_and_classes(tmp_path: Path) -> None:
    dataset = generate_shapes(tmp_path / "shapes", SPEC)
    assert dataset.classes == sorted(SHAPE_CLASSES) and len(dataset.classes) == 10
    assert dataset.summary["counts"]["train"] == dict.fromkeys(SHAPE_CLASSES, 6)
    assert dataset.summary["counts"]["test"] == dict.fromkeys(SHAPE_CLASSES, 2)
    files = sorted((tmp_path / "shapes" / "val").glob("*/*.jpg"))
    assert len(files) == 20
    sizes = {Image.open(f).size for f in sorted((tmp_path / "shapes" / "train").glob("*/*.jpg"))}
    assert len(sizes) > 10, "image sizes and aspect ratios should vary"
    assert all(32 <= w <= 64 and 32 <= h <= 64 for w, h in sizes)
    assert not list(tmp_path.glob(".*partial*")), "no staging directory left behind"


def test_same_seed_same_images_other_seed_different(tmp_path: Path) -> None:
    a = generate_shapes(tmp_path / "a", SPEC).fingerprint
    b = generate_shapes(tmp_path / "b", SPEC).fingerprint
    c = generate_shapes(tmp_path / "c", ShapesSpec(**{**SPEC.__dict__, "seed": 4})).fingerprint
    assert a == b != c
    assert load_prepared_dataset(tmp_path / "a").fingerprint == a


def test_colour_alone_does_not_give_the_class_away(tmp_path: Path) -> None:
    """A nearest-centroid classifier on mean colour scores near chance (0.1)."""
    spec = ShapesSpec(seed=5, train_per_class=40, val_per_class=1, test_per_class=20, min_side=32, max_side=48)
    root = generate_shapes(tmp_path / "shapes", spec).root

    def features(split: str) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for label, name in enumerate(sorted(SHAPE_CLASSES)):
            for path in sorted((root / split / name).glob("*.jpg")):
                pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
                xs.append(np.concatenate([pixels.mean(axis=(0, 1)), pixels.std(axis=(0, 1))]))
                ys.append(label)
        return np.stack(xs), np.array(ys)

    x_train, y_train = features("train")
    x_test, y_test = features("test")
    centroids = np.stack([x_train[y_train == k].mean(axis=0) for k in range(10)])
    predicted = np.argmin(((x_test[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == y_test).mean() < 0.25


def test_the_data_command_and_training_regenerate_shapes_only_when_the_settings_change(tmp_path: Path) -> None:
    """`invoke data shapes` and `train` share one rule: reuse what matches the settings, regenerate what does not."""
    settings = {**SPEC.__dict__}
    config = tmp_path / "shapes.yaml"
    config.write_text(yaml.safe_dump({"name": "shapes", "generate": settings}))
    target = tmp_path / "data" / "processed" / "shapes"
    assert main(["shapes", "--root", str(tmp_path / "data"), "--config", str(config)]) == 0
    first, written = load_prepared_dataset(target).fingerprint, target.stat().st_ino
    assert open_dataset(OmegaConf.create({"name": "shapes", "root": str(tmp_path / "data"), "generate": settings}))
    assert target.stat().st_ino == written  # same settings: reused, not written again
    config.write_text(yaml.safe_dump({"name": "shapes", "generate": {**settings, "seed": 4}}))
    assert main(["shapes", "--root", str(tmp_path / "data"), "--config", str(config)]) == 0
    assert load_prepared_dataset(target).fingerprint != first  # other settings: regenerated, no --force needed


def test_an_unknown_shapes_setting_is_a_one_line_config_error() -> None:
    with pytest.raises(ConfigError, match=r"Bad shapes generate settings: .*'bogus'"):
        shapes_spec({"bogus": 1})


def test_shapes_is_a_registered_source_generated_from_its_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, settings, root = SOURCES["shapes"], {**SPEC.__dict__}, tmp_path / "data"
    assert source.generated and source.settings_key == "generate"
    assert prepare_if_needed(source, root, settings) is True
    assert prepare_if_needed(source, root, settings) is False
    assert prepare_if_needed(source, root, settings, force=True) is True
    with pytest.raises(UserError, match="shapes is generated from its settings; --source does not apply"):
        prepare_if_needed(source, root, settings, origin=tmp_path)

    config = tmp_path / "shapes.yaml"
    config.write_text(yaml.safe_dump({"name": "shapes", "generate": settings}))
    assert main(["shapes", "--root", str(root), "--config", str(config)]) == 0
    assert "shapes is already prepared in" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["shapes", "--root", str(root), "--source", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: shapes is generated from its settings; --source does not apply to it.\n"
