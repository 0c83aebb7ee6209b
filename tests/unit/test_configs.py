"""Every config composes, and the defaults describe the offline quickstart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from image_classifier.config.checks import check_train_config
from image_classifier.errors import ConfigError
from tests.conftest import REPO_ROOT, ComposeFn

CONFIGS = REPO_ROOT / "configs"
GROUPS = ["data", "model", "trainer", "logger", "experiment", "hparams_search"]
BASES = {("data", "default"), ("experiment", "_finetune_gpu")}  # extended by the others, not chosen alone
OPTIONS = [
    (group, path.stem)
    for group in GROUPS
    for path in sorted((CONFIGS / group).glob("*.yaml"))
    if (group, path.stem) not in BASES
]


def _leaves(node: DictConfig, prefix: str = "") -> Iterator[tuple[str, object]]:
    """``(dotted key, value)`` of every leaf that is not an interpolation (and not the defaults list)."""
    for key in node:
        path = f"{prefix}{key}"
        if path == "defaults" or OmegaConf.is_interpolation(node, str(key)):
            continue
        value = node[key]
        if isinstance(value, DictConfig):
            yield from _leaves(value, f"{path}.")
        else:
            yield path, OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_resolves_and_passes_the_checks(
    compose_config: ComposeFn, group: str, option: str
) -> None:
    cfg = compose_config("train", [f"{group}={option}"])
    OmegaConf.resolve(cfg)
    check_train_config(cfg)  # every shipped setting is valid: ranges, choices, timm names, the monitor
    own = OmegaConf.load(CONFIGS / group / f"{option}.yaml")
    if group in ("data", "model", "trainer", "logger"):  # the option's own values are what was composed
        for key, value in _leaves(own):
            assert OmegaConf.select(cfg, f"{group}.{key}") == value, f"{group}.{key}"


def test_a_base_alone_is_not_a_runnable_choice(compose_config: ComposeFn) -> None:
    cfg = compose_config("train", ["data=default"])
    with pytest.raises(ConfigError, match=r"data\.name=\?\?\?: must be one of"):
        check_train_config(cfg)


def test_defaults_are_the_offline_quickstart(compose_config: ComposeFn) -> None:
    cfg = compose_config("train")
    assert cfg.data.name == "shapes"
    assert cfg.model.name == "baseline_cnn" and not cfg.model.pretrained
    assert cfg.logger.name == "wandb"
    assert Path(cfg.paths.data_dir) == REPO_ROOT / "data"


def test_evaluate_composes_with_a_checkpoint(compose_config: ComposeFn) -> None:
    cfg = compose_config("evaluate", ["checkpoint=some/best.pt", "data=cifar10", "split=val"])
    assert cfg.checkpoint == "some/best.pt" and cfg.data.name == "cifar10" and cfg.split == "val"
