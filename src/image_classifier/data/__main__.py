"""``python -m image_classifier.data NAME [--source PATH] [--root DIR]``: get and prepare a dataset.

A built-in dataset is downloaded (or imported from the archive you have); any other NAME imports your
own photos from ``--source`` (see :mod:`image_classifier.data.importing`). ``python -m image_classifier.data
report NAME`` writes the data-quality report of a prepared dataset again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from image_classifier.data.config_files import data_settings
from image_classifier.data.importing import add_report_options, import_main, report_main
from image_classifier.data.layout import load_prepared_dataset, prepared_dir
from image_classifier.data.sources import KNOWN_DATASETS, prepare_if_needed, source_named
from image_classifier.errors import DataError, report_user_errors


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.data", description=__doc__)
    parser.add_argument("name", help=f"dataset name: {', '.join(KNOWN_DATASETS)}, or a new name for your photos")
    parser.add_argument(
        "--source", type=Path, default=None,
        help="built-in datasets: the archive as distributed, or its unpacked folder; a new name: your photos "
        "(a folder of class folders or of train/val/test folders, a .zip/.tar/.tar.gz/.tgz of one, or a CSV/TSV "
        "of path,label[,split])",
    )  # fmt: skip
    parser.add_argument("--root", type=Path, default=Path("data"), help="data directory (default: data)")
    parser.add_argument(
        "--config", type=Path, default=None, help="data config or params.yaml (default: configs/data/NAME.yaml)"
    )
    parser.add_argument("--force", action="store_true", help="prepare again; for your photos: replace the name")
    importing = parser.add_argument_group("importing your photos")
    importing.add_argument("--val-fraction", type=float, help="of each class, when the source has no val split")
    importing.add_argument("--test-fraction", type=float, help="of each class, when the source has no test split")
    importing.add_argument("--seed", type=int, help="for the carved splits (default 0)")
    importing.add_argument("--dedupe", action="store_true", help="remove val/test copies of photos in train")
    add_report_options(importing)
    return parser


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        return report_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.name not in KNOWN_DATASETS:
        return import_main(args)
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
    except DataError as error:
        if args.source is None:
            raise
        raise DataError(
            f"{error} (To import your own photos, give them a name that is not a built-in dataset.)"
        ) from error
    print(ready_line(args.name, load_prepared_dataset(target).summary, target))
    return 0


def ready_line(name: str, summary: dict[str, Any], target: Path) -> str:
    counts = ", ".join(f"{split}: {sum(per_class.values())}" for split, per_class in summary["counts"].items())
    skipped = len(summary["skipped"])
    return f"{name} ready in {target} ({len(summary['classes'])} classes; {counts}; skipped {skipped})"


if __name__ == "__main__":
    sys.exit(main())
