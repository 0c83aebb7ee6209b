"""Every kind of bad setting is one ``ConfigError`` line naming the key, the value and what is valid.

These run the same two checks as the entry points, in-process: composition with the command line's
overrides (types, keys, group options) and then the value checks (ranges, choices, timm names, the
monitored metric, file paths). The command-line path itself is covered in ``test_train_evaluate``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from image_classifier.config.checks import check_evaluate_config, check_train_config
from image_classifier.config.entry import check_composes
from image_classifier.errors import ConfigError
from tests.conftest import ComposeFn

# override -> fragments the one-line message must hold: the key and value, and what would be valid
BAD_TRAIN_OVERRIDES = {
    "optimizer.opt=adamx": ["optimizer.opt=adamx", "adamax"],
    "scheduler.sched=cosinus": ["scheduler.sched=cosinus", "cosine"],
    "data.image_size=abc": ["data.image_size=abc", "Integer"],
    "trainer.seed=abc": ["trainer.seed=abc", "Integer"],
    "data.num_workers=-3": ["data.num_workers=-3", "auto or a number"],
    "model.drop_rate=2": ["model.drop_rate=2", "[0, 1)"],
    "trainer.monitor=val/acc": ["trainer.monitor=val/acc", "val/accuracy"],
    "trainer.monitr=val/loss": ["trainer.monitr", "did you mean trainer.monitor"],
    "trainer.ema.decay=1.5": ["trainer.ema.decay=1.5", "[0, 1)"],
    "trainer.precision=fp16": ["trainer.precision=fp16", "bf16-mixed"],
    "trainer.device=tpu": ["trainer.device=tpu", "auto, cpu, cuda, mps"],
    "trainer.max_epochs=0": ["trainer.max_epochs=0", "at least 1"],
    "trainer.monitor_mode=maximum": ["trainer.monitor_mode=maximum", "max, min"],
    "trainer.mixup.mode=row": ["trainer.mixup.mode=row", "batch, pair, elem"],
    "trainer.resume=/no/such/last.pt": ["trainer.resume=/no/such/last.pt", "auto or null"],
    "model.name=resnet1800": ["resnet1800", "resnet18"],
    "model.weights=/no/such.safetensors": ["model.weights=/no/such.safetensors", "offline"],
    "optimizer.lr=0": ["optimizer.lr=0", "positive"],
    "optimizer.lr_scaling=cubic": ["optimizer.lr_scaling=cubic", "linear"],
    "optimizer.layer_decay=1.2": ["optimizer.layer_decay=1.2", "(0, 1]"],
    "+optimizer.kwargs.foo=1": ["optimizer: timm will not build", "'foo'"],
    "data=imagenet": ["data/imagenet", "animals_v2, cats_vs_dogs, cifar10"],
    "data.augment.scale=[0.9,0.1]": ["data.augment.scale=[0.9, 0.1]", "min <= max"],
    "data.augment_device=gpu": ["data.augment_device=gpu", "workers"],
    "data.crop_pct=1.5": ["data.crop_pct=1.5", "(0, 1]"],
    "data.batch_size=0": ["data.batch_size=0", "at least 1"],
    "logger=tensorboard": ["logger/tensorboard", "wandb"],
}


def first_error(compose_config: ComposeFn, config_name: str, overrides: list[str]) -> str:
    """What the entry point reports for ``overrides``: the composition error, else the first value error."""
    with pytest.raises(ConfigError) as error:
        check_composes(config_name, overrides)
        cfg = compose_config(config_name, overrides)
        (check_train_config if config_name == "train" else check_evaluate_config)(cfg)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("override", list(BAD_TRAIN_OVERRIDES))
def test_a_bad_train_override_is_one_line_naming_key_value_and_what_is_valid(
    compose_config: ComposeFn, override: str
) -> None:
    message = first_error(compose_config, "train", [override])
    for fragment in BAD_TRAIN_OVERRIDES[override]:
        assert fragment in message, message


def test_every_shipped_config_passes_the_checks_and_new_keys_can_be_added(compose_config: ComposeFn) -> None:
    overrides = ["+new.key=1", "+trainer.note=kept"]
    check_composes("train", overrides)
    cfg = compose_config("train", overrides)
    check_train_config(cfg)
    assert cfg.new.key == 1 and cfg.trainer.note == "kept"


def test_the_monitor_is_checked_against_the_classes_once_they_are_known(compose_config: ComposeFn) -> None:
    from image_classifier.config.checks import check_monitor

    cfg = compose_config("train", ["trainer.monitor=val/top5_accuracy"])
    check_monitor(cfg, num_classes=10)
    with pytest.raises(ConfigError, match=r"trainer.monitor=val/top5_accuracy: this run produces no such metric"):
        check_monitor(cfg, num_classes=2)  # a two-class run has no top-5 accuracy


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ([], "checkpoint is not set"),
        (["checkpoint=/no/such/best.pt"], "checkpoint=/no/such/best.pt: no such file"),
        (["checkpoint=__FILE__", "split=holdout"], "split=holdout: must be one of train, val, test"),
        (["checkpoint=__FILE__", "data.image_size=big"], "data.image_size=big"),
    ],
)
def test_a_bad_evaluate_setting_is_one_line(
    compose_config: ComposeFn, tmp_path: Path, overrides: list[str], fragment: str
) -> None:
    (tmp_path / "best.pt").write_bytes(b"")
    overrides = [o.replace("__FILE__", str(tmp_path / "best.pt")) for o in overrides]
    assert fragment in first_error(compose_config, "evaluate", overrides)
