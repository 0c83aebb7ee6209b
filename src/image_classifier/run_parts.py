"""A run's parts from its config: the dataset, the model, the model's train and eval data configs, the loaders.

Training, evaluation and the benchmark build them here, so they all read a split the same way: training crops
at ``data.image_size``; validation, test, evaluation and serving read at ``data.eval_image_size`` (or
``data.image_size`` when it is unset).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from image_classifier.checkpoint import Bundle
from image_classifier.data.layout import PreparedDataset
from image_classifier.data.loaders import DataLoaders, build_dataloaders, open_dataset, split_loader
from image_classifier.errors import CheckpointError
from image_classifier.model import create_model, eval_data_config, model_kwargs


@dataclass(frozen=True)
class DataConfigs:
    """The model's input configs (size, mean, std, interpolation, crop): ``train`` at ``data.image_size`` for the
    augmented training crops, ``eval`` for everything that reads a split as it is (and for the bundle)."""

    train: dict[str, Any]
    eval: dict[str, Any]

    @classmethod
    def from_eval(cls, eval_config: dict[str, Any], image_size: int) -> DataConfigs:
        """``eval_config``, and the same at ``image_size`` pixels for training."""
        return cls(train={**eval_config, "input_size": (3, int(image_size), int(image_size))}, eval=eval_config)

    @classmethod
    def for_model(cls, model: nn.Module, data_cfg: Any) -> DataConfigs:
        """``model``'s configs for ``data_cfg`` (see :func:`~image_classifier.model.eval_data_config`)."""
        return cls.from_eval(eval_data_config(model, data_cfg), data_cfg.image_size)


@dataclass
class RunParts:
    """The dataset, the model and its data configs of one run, and the loaders over the dataset's splits."""

    data_cfg: Any
    dataset: PreparedDataset
    model: nn.Module
    model_kwargs: dict[str, Any]
    data_configs: DataConfigs
    seed: int
    device: torch.device | None = None

    @property
    def classes(self) -> list[str]:
        return self.dataset.classes

    def loader(self, split: str, training: bool = False, data_config: dict[str, Any] | None = None) -> DataLoader:
        """One split's loader: augmented and shuffled when ``training``; ``data_config`` replaces the run's own."""
        config = data_config or (self.data_configs.train if training else self.data_configs.eval)
        return split_loader(self.data_cfg, self.dataset, split, config, self.seed, training, device=self.device)

    def loaders(self) -> DataLoaders:
        """One loader per split that the dataset has, as training reads them (``train`` augmented)."""
        return build_dataloaders(self.data_cfg, self.dataset, self.data_configs.eval, self.seed, device=self.device)


def build_model(
    model_cfg: Any, num_classes: int, *, weights: bool = True, state_dict: dict[str, torch.Tensor] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """``model_cfg``'s model with a ``num_classes`` head, and the kwargs that rebuild its architecture.

    Its weights: ``state_dict`` when given (a resumed run's), else what ``model.pretrained`` and ``model.weights``
    name, unless ``weights`` is false (a freshly initialised model).
    """
    kwargs = model_kwargs(model_cfg)
    pretrained, source = (bool(model_cfg.pretrained), model_cfg.weights) if weights else (False, None)
    model = create_model(model_cfg.name, num_classes=num_classes, pretrained=pretrained, weights=source, **kwargs)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model, kwargs


def build_run_parts(
    cfg: Any,
    device: torch.device | None = None,
    *,
    dataset: PreparedDataset | None = None,
    weights: bool = True,
    model_state_dict: dict[str, torch.Tensor] | None = None,
) -> RunParts:
    """The parts of ``cfg``'s run: its dataset (``dataset`` when already open), the model (see :func:`build_model`)
    and its data configs; ``device`` is where the model will run (it sizes the loaders' workers)."""
    dataset = dataset if dataset is not None else open_dataset(cfg.data)
    model, kwargs = build_model(cfg.model, len(dataset.classes), weights=weights, state_dict=model_state_dict)
    configs = DataConfigs.for_model(model, cfg.data)
    return RunParts(cfg.data, dataset, model, kwargs, configs, int(cfg.trainer.seed), device)


def bundle_run_parts(cfg: Any, bundle: Bundle, device: torch.device | None = None) -> RunParts:
    """The parts that evaluate ``bundle`` on ``cfg``'s dataset: its model and its eval data config, the dataset
    checked to have the bundle's classes."""
    dataset = open_dataset(cfg.data)
    if dataset.classes != bundle.classes:
        raise CheckpointError(
            f"The checkpoint's classes {bundle.classes} do not match {cfg.data.name}'s classes {dataset.classes}."
        )
    configs = DataConfigs.from_eval(bundle.data_config, cfg.data.image_size)
    model = bundle.build_model()
    return RunParts(cfg.data, dataset, model, bundle.model_kwargs, configs, int(cfg.trainer.seed), device)
