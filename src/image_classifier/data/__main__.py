"""``python -m image_classifier.data NAME [--source PATH] [--root DIR]``: get and prepare a dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from image_classifier.data.layout import is_prepared, load_prepared_dataset
from image_classifier.data.shapes import ShapesSpec, generate_shapes
from image_classifier.errors import UserError


def prepare(name: str, root: Path, source: Path | None = None) -> Path:
    """Prepare ``name`` into ``root/processed/name``; a no-op when it is already prepared."""
    target = root / "processed" / name
    if is_prepared(target):
        return target
    if name == "shapes":
        generate_shapes(target, ShapesSpec())
        return target
    raise UserError(f"Unknown dataset '{name}'. Known: shapes.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.data", description=__doc__)
    parser.add_argument("name", help="dataset name")
    parser.add_argument("--source", type=Path, default=None, help="an archive or folder you already have")
    parser.add_argument("--root", type=Path, default=Path("data"), help="data directory (default: data)")
    args = parser.parse_args(argv)
    try:
        target = prepare(args.name, args.root, args.source)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = load_prepared_dataset(target).summary
    counts = ", ".join(f"{split}: {sum(per_class.values())}" for split, per_class in summary["counts"].items())
    print(f"{args.name} ready in {target} ({len(summary['classes'])} classes; {counts}; skipped {len(summary['skipped'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
