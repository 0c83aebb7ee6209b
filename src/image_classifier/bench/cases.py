"""The bench's plan: which training and evaluation loops it measures, on which data, at which sizes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One measurement: a training or evaluation loop on a dataset at one size."""

    case: str
    phase: str
    overrides: list[str]
    batches: int = 0
    """Batches timed per round; 0 means one full epoch."""
    rounds: int = 2
    split: str = "val"
    epoch: bool = False
    """Report the loop time as ``epoch_s`` (the case runs a whole epoch)."""
    reference: bool = False
    """A path the project does not take by default, shown for contrast: the 0.95 goal does not apply."""


def shapes_overrides(root: Path, per_class: int | None = None) -> list[str]:
    overrides = ["data=shapes", "model=baseline_cnn", f"data.root={root}"]
    if per_class is not None:
        overrides += [f"data.generate.train_per_class={per_class}", "data.generate.val_per_class=10"]
        overrides += ["data.generate.test_per_class=10"]
    return overrides


def animals_overrides(root: Path, size: int, batch: int) -> list[str]:
    return [
        "data=animals_v2",
        "model=convnextv2_atto",
        f"data.root={root}",
        f"data.image_size={size}",
        f"data.batch_size={batch}",
    ]


def main_shapes_overrides(data_root: Path, quick: bool, image_size: int | None) -> list[str]:
    """The shapes data the train and eval cases (and the accuracy record) use: a tiny set at 32 px with
    ``quick``, else the embedded shapes data at the config's size (or ``image_size``)."""
    if quick:
        return [*shapes_overrides(data_root / "shapes-quick", 20), f"data.image_size={image_size or 32}"]
    return shapes_overrides(data_root / "shapes") + ([f"data.image_size={image_size}"] if image_size else [])


def plan(data_root: Path, shared: Path | None, quick: bool, image_size: int | None) -> list[Case]:
    """The cases to run; ``quick`` keeps only short shapes cases (for tests and a first look)."""
    shapes = main_shapes_overrides(data_root, quick, image_size)
    if quick:
        return [Case("shapes", "train", shapes, batches=3, rounds=1), Case("shapes", "eval", shapes, rounds=1)]
    cases = [
        Case("shapes", "train", shapes, batches=8, rounds=6),
        Case("shapes", "eval", shapes, rounds=8),
        Case(
            "reference: shapes decoding JPEGs every epoch (data.cache=false)",
            "train",
            [*shapes, "data.cache=false"],
            batches=8,
            rounds=4,
            reference=True,
        ),
    ]
    if shared is not None:
        animals = data_root / "animals_v2"
        cases += [
            Case("animals_v2", "train", animals_overrides(animals, 64, 64), batches=4, rounds=6),
            Case("animals_v2", "eval", animals_overrides(animals, 64, 64), rounds=6),
            Case("animals_v2", "train", animals_overrides(animals, 224, 16), batches=6, rounds=4),
            Case("animals_v2", "eval", animals_overrides(animals, 224, 16), batches=6, rounds=4),
        ]
    # one whole epoch each, with the quickstart's CNN at 32 px so that 10k images fit the run
    for label, per_class in (("1k", 100), ("10k", 1000)):
        overrides = [*shapes_overrides(data_root / f"shapes-{label}", per_class), "data.image_size=32"]
        name = f"shapes {label} images, one epoch (32 px)"
        cases.append(Case(name, "train", overrides, rounds=3 if per_class < 1000 else 1, epoch=True))
    return cases
