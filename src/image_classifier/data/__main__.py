"""``python -m image_classifier.data NAME [--source PATH] [--root DIR]``: get and prepare a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from image_classifier.data.layout import load_prepared_dataset, prepared_dir
from image_classifier.data.sources import KNOWN_DATASETS, Source, prepare_if_needed, source_named
from image_classifier.errors import ConfigError, report_user_errors
from image_classifier.runtime import project_root


def default_config(name: str) -> Path:
    """``configs/data/NAME.yaml`` of the project (``$PROJECT_ROOT``, the source checkout, or the cwd)."""
    return project_root() / "configs" / "data" / f"{name}.yaml"


def data_settings(source: Source, config: Path | None) -> dict[str, Any]:
    """The section of a data config (or a composed ``params.yaml``) that says how ``source`` is prepared."""
    path = config or default_config(source.name)
    if not path.is_file():
        if config is not None:
            raise ConfigError(f"--config {path} does not exist.")
        return {}
    try:
        loaded = OmegaConf.load(path)
        section = loaded.get("data", loaded) if isinstance(loaded, DictConfig) else None
        if not isinstance(section, DictConfig):
            raise ConfigError(f"{path} is not a data config.")
        if section.get("name", source.name) != source.name:
            raise ConfigError(f"{path} configures dataset '{section.name}', not '{source.name}'.")
        values = section.get(source.settings_key)
        return OmegaConf.to_container(values, resolve=True) if isinstance(values, DictConfig) else {}  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        raise ConfigError(f"Cannot read {path}: {error}") from error


@report_user_errors
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
    dataset = source_named(args.name)
    target = prepared_dir(args.root, args.name)
    settings = data_settings(dataset, args.config)
    try:
        if not prepare_if_needed(dataset, args.root, settings, origin=args.source, force=args.force):
            print(f"{args.name} is already prepared in {target} (--force to prepare it again)")
            return 0
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
