"""``python -m image_classifier.data NAME [--source PATH] [--root DIR]``: get and prepare a dataset."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from image_classifier.data.layout import is_prepared, load_prepared_dataset
from image_classifier.data.shapes import ensure_shapes, generate_shapes, shapes_spec
from image_classifier.data.sources import KNOWN_DATASETS, SOURCES, PrepareSettings, prepare_source
from image_classifier.errors import ConfigError, UserError


def default_config(name: str) -> Path:
    """``configs/data/NAME.yaml`` of the project (``$PROJECT_ROOT``, the source checkout, or the cwd)."""
    checkout = Path(__file__).resolve().parents[3]
    root = Path(os.environ.get("PROJECT_ROOT") or (checkout if (checkout / "configs").is_dir() else Path.cwd()))
    return root / "configs" / "data" / f"{name}.yaml"


def data_settings(name: str, config: Path | None) -> dict[str, Any]:
    """The ``prepare`` (or, for shapes, ``generate``) section of a data config or a composed ``params.yaml``."""
    path = config or default_config(name)
    if not path.is_file():
        if config is not None:
            raise ConfigError(f"--config {path} does not exist.")
        return {}
    try:
        loaded = OmegaConf.load(path)
        section = loaded.get("data", loaded) if isinstance(loaded, DictConfig) else None
        if not isinstance(section, DictConfig):
            raise ConfigError(f"{path} is not a data config.")
        if section.get("name", name) != name:
            raise ConfigError(f"{path} configures dataset '{section.name}', not '{name}'.")
        values = section.get("generate" if name == "shapes" else "prepare")
        return OmegaConf.to_container(values, resolve=True) if isinstance(values, DictConfig) else {}  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(f"Cannot read {path}: {error}") from error


def prepare(name: str, root: Path, source: Path | None = None, force: bool = False, config: Path | None = None) -> Path:
    """Prepare ``name`` into ``root/processed/name``; a no-op when it is already prepared (unless ``force``)."""
    if name not in KNOWN_DATASETS:
        raise UserError(f"Unknown dataset '{name}'. Known: {', '.join(KNOWN_DATASETS)}.")
    target = Path(root) / "processed" / name
    if name == "shapes":  # generated from its settings: regenerated when they change
        if source is not None:
            raise UserError("shapes is generated from a seed; --source does not apply to it.")
        spec = shapes_spec(data_settings(name, config))
        if force:
            generate_shapes(target, spec)
        else:
            ensure_shapes(target, spec)
        return target
    if is_prepared(target) and not force:
        return target
    settings = data_settings(name, config)
    prepare_source(SOURCES[name], Path(root), source, PrepareSettings.from_mapping(settings))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.data", description=__doc__)
    parser.add_argument("name", help=f"dataset name: {', '.join(KNOWN_DATASETS)}")
    parser.add_argument("--source", type=Path, default=None, help="the archive as distributed, or its unpacked folder")
    parser.add_argument("--root", type=Path, default=Path("data"), help="data directory (default: data)")
    parser.add_argument(
        "--config", type=Path, default=None, help="data config or params.yaml (default: configs/data/NAME.yaml)"
    )
    parser.add_argument("--force", action="store_true", help="prepare again even if already prepared")
    args = parser.parse_args(argv)
    target = args.root / "processed" / args.name
    if args.name != "shapes" and is_prepared(target) and not args.force:
        print(f"{args.name} is already prepared in {target} (--force to prepare it again)")
        return 0
    try:
        target = prepare(args.name, args.root, args.source, force=args.force, config=args.config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: nothing was kept in {target}", file=sys.stderr)
        return 130
    summary = load_prepared_dataset(target).summary
    counts = ", ".join(f"{split}: {sum(per_class.values())}" for split, per_class in summary["counts"].items())
    skipped = len(summary["skipped"])
    print(f"{args.name} ready in {target} ({len(summary['classes'])} classes; {counts}; skipped {skipped})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
