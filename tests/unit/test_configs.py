"""Every config composes, and the defaults describe the offline quickstart."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO_ROOT, ComposeFn

CONFIGS = REPO_ROOT / "configs"
GROUPS = ["data", "model", "trainer", "logger", "experiment", "hparams_search"]
OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted((CONFIGS / group).glob("*.yaml"))]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes_and_resolves(compose_config: ComposeFn, group: str, option: str) -> None:
    cfg = compose_config("train", [f"{group}={option}"])
    OmegaConf.resolve(cfg)
    assert cfg.model.name and cfg.data.name and cfg.trainer.max_epochs >= 1


def test_defaults_are_the_offline_quickstart(compose_config: ComposeFn) -> None:
    cfg = compose_config("train")
    assert cfg.data.name == "shapes"
    assert cfg.model.name == "baseline_cnn" and not cfg.model.pretrained
    assert cfg.logger.name == "wandb"
    assert Path(cfg.paths.data_dir) == REPO_ROOT / "data"


def test_evaluate_composes_with_a_checkpoint(compose_config: ComposeFn) -> None:
    cfg = compose_config("evaluate", ["checkpoint=some/best.pt", "data=cifar10", "split=val"])
    assert cfg.checkpoint == "some/best.pt" and cfg.data.name == "cifar10" and cfg.split == "val"
