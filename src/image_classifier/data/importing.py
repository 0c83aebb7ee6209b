"""``invoke data NAME --source PATH`` for a NAME the project does not know: import the user's photos.

Copies them into ``ROOT/raw/NAME``, prepares ``ROOT/processed/NAME`` (with ``quality.json``), writes the
readable quality report to ``reports/data/NAME/`` and ``configs/data/NAME.yaml``, and prints what to run
next. A taken name is refused unless ``--force``; Ctrl-C leaves what was there untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from image_classifier.data.config_files import data_settings, default_config
from image_classifier.data.layout import is_prepared, load_prepared_dataset, prepared_dir
from image_classifier.data.quality_report import analyse_prepared, one_line, save_quality_json, write_report
from image_classifier.data.sources import ImportedSource, source_named
from image_classifier.data.sources.user import ImportSettings
from image_classifier.data.sources.user_names import check_dataset_name
from image_classifier.data.user_config import imported_from, read_data_config, write_data_config
from image_classifier.errors import ConfigError, DataError
from image_classifier.project import project_root

WARNINGS_SHOWN = 10


def add_report_options(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--workers", type=int, default=0, help="processes decoding or hashing, threads copying (default: one per core)"
    )
    parser.add_argument(
        "--reports", type=Path, default=None, help="where reports go (default: reports/data under the project)"
    )


def reports_dir(args: argparse.Namespace, name: str) -> Path:
    return (args.reports or project_root() / "reports" / "data") / name


def refuse_taken(name: str, root: Path, config: Path) -> None:
    """A name whose config or prepared data exists is refused (``--force`` replaces it)."""
    recorded = imported_from(config)
    if config.exists():
        what = f"{config} exists" + (f" (imported from {recorded})" if recorded else "")
    elif is_prepared(prepared_dir(root, name)):
        what = f"{prepared_dir(root, name)} exists"
    else:
        return
    raise DataError(
        f"The name '{name}' is taken: {what}. Pass --force to import again and replace it, or choose another name."
    )


def import_settings(args: argparse.Namespace, source: ImportedSource, config: Path) -> dict[str, Any]:
    """The recorded prepare settings (the config's, or ``--config``'s), then the ones given on the command line."""
    settings = data_settings(source, args.config) if args.config or config.is_file() else {}
    given = {
        "val_fraction": args.val_fraction,
        "test_fraction": args.test_fraction,
        "seed": args.seed,
        "dedupe": True if args.dedupe else None,
        "source": str(Path(args.source).expanduser().absolute()) if args.source else None,
    }
    return {**settings, **{key: value for key, value in given.items() if value is not None}}


def import_main(args: argparse.Namespace) -> int:
    """Import (or, without ``--source``, prepare again from ``raw/NAME``) the user's dataset ``args.name``."""
    name, root = args.name, Path(args.root)
    check_dataset_name(name)
    config = default_config(name)
    if args.source is not None and not args.force:
        refuse_taken(name, root, config)
    if args.source is None and args.config is None and imported_from(config) is None:
        source_named(name)  # the unknown-dataset error, with how to import
    source = ImportedSource(name, workers=args.workers)
    settings = import_settings(args, source, config)
    target = prepared_dir(root, name)
    if args.source is None and not args.force and source.is_current(target, settings):
        print(f"{name} is already prepared in {target} (--force to prepare it again)")
        return 0
    try:
        prepared = source.prepare(root, args.source, settings)
    except KeyboardInterrupt:
        print(f"interrupted: nothing was kept, {target} and {root / 'raw' / name} are as they were", file=sys.stderr)
        return 130
    report = json.loads((target / "quality.json").read_text())
    try:
        markdown = write_report(name, target, report, reports_dir(args, name))
    except KeyboardInterrupt:
        print(f"interrupted: {target} is prepared but its report and data config are not written; import again "
              "with --force to finish", file=sys.stderr)  # fmt: skip
        return 130
    print(f"{name} ready in {target} ({summary_counts(prepared.summary)})")
    print_quality(report, markdown)
    if args.config is None:
        median = report["sizes"]["shorter_side"].get("median", 0)
        written = write_data_config(config, name, source_settings(target), prepared.summary, median)
        print(f"wrote {written} (image_size {read_data_config(written).image_size})")  # type: ignore[union-attr]
        print_next(name, root)
    return 0


def source_settings(target: Path) -> ImportSettings:
    """The settings the prepared dataset at ``target`` was imported with."""
    return ImportSettings.from_mapping(load_prepared_dataset(target).summary["source"]["settings"])


def summary_counts(summary: dict[str, Any]) -> str:
    counts = ", ".join(f"{split}: {sum(per_class.values())}" for split, per_class in summary["counts"].items())
    return f"{len(summary['classes'])} classes; {counts}; skipped {len(summary['skipped'])}"


def print_quality(report: dict[str, Any], markdown: Path) -> None:
    print(f"quality: {one_line(report)} -> {markdown}")
    for warning in report["warnings"][:WARNINGS_SHOWN]:
        print(f"warning: {warning}", file=sys.stderr)
    if len(report["warnings"]) > WARNINGS_SHOWN:
        print(f"warning: ... {len(report['warnings']) - WARNINGS_SHOWN} more in {markdown}", file=sys.stderr)


def print_next(name: str, root: Path) -> None:
    data_root = "" if root == Path("data") else f" data.root={root}"
    print("next:")
    print(f"  dvc add {root / 'raw' / name}        # version the photos (then git add the .dvc file and the config)")
    print(f'  invoke train "experiment=finetune_cpu data={name}{data_root}"')


def report_main(argv: list[str]) -> int:
    """``python -m image_classifier.data report NAME``: the quality report of a prepared dataset, written again."""
    parser = argparse.ArgumentParser(prog="python -m image_classifier.data report", description=report_main.__doc__)
    parser.add_argument("name", help="a prepared dataset (built-in or imported)")
    parser.add_argument("--root", type=Path, default=Path("data"), help="data directory (default: data)")
    add_report_options(parser)
    args = parser.parse_args(argv)
    target = prepared_dir(args.root, args.name)
    if not is_prepared(target):
        raise DataError(f"No prepared dataset at {target}: run `invoke data {args.name}` first.")
    recorded = read_data_config(default_config(args.name))
    prepare = recorded.get("prepare") if recorded is not None else None
    distance = prepare.get("near_duplicate_distance") if prepare is not None else None
    if distance is not None and not isinstance(distance, int):
        raise ConfigError(f"prepare.near_duplicate_distance={distance} must be a whole number.")
    report = analyse_prepared(target, args.workers, **({"distance": distance} if distance is not None else {}))
    save_quality_json(target, report)
    print_quality(report, write_report(args.name, target, report, reports_dir(args, args.name)))
    return 0
