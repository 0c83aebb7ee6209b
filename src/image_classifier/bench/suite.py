"""``python -m image_classifier.bench``: throughput against the compute ceiling, memory and start-up time.

Each case runs in a fresh process (so its peak RSS is its own) and writes one record to
``reports/bench/bench.json``: ``case``, ``phase``, ``img_size``, ``batch_size``, ``ceiling_img_s``,
``measured_img_s``, ``ratio``, ``peak_rss_mb`` (plus details). Cases: the embedded shapes data
(the quickstart's model and size), the Animals-V2 sample in ``../shared/data`` at 64 and 224 px
(skipped with a message where that folder is absent), 1k vs 10k shapes images for one full
epoch (memory and epoch time against dataset size), and the time from ``invoke train`` to the
first training step. Records of ``python -m image_classifier.bench.serve`` (and of ``bench.slim``, the slim
ONNX server against today's ONNX backend) are appended when that module exists, and those of
:mod:`image_classifier.bench.imports` (importing 2,000 and 20,000 generated photos: photos/s and peak
memory; skip it with ``--no-import``).

Speed never comes at the cost of accuracy: one ``accuracy`` record (:mod:`image_classifier.bench.accuracy`)
trains the same short deterministic run with three seeds through the default pipeline (``data.cache=true``)
and through the plain JPEG path (``data.cache=false``); a mean accuracy more than a point below the JPEG
path's makes the bench exit non-zero (skip it with ``--no-accuracy``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console

from image_classifier.bench.cases import Case
from image_classifier.bench.children import prepare_dataset, run_case, warm_cache
from image_classifier.bench.runner import BenchOptions, run
from image_classifier.errors import report_user_errors
from image_classifier.project import project_root

console = Console(width=None if sys.stdout.isatty() else 160)


def build_parser() -> argparse.ArgumentParser:
    """The command line: what to run and where; the suppressed options are the child processes' modes."""
    parser = argparse.ArgumentParser(prog="python -m image_classifier.bench", description=__doc__.split("\n")[0])
    root = project_root()
    parser.add_argument("--out", type=Path, default=root / "reports" / "bench", help="where bench.json goes")
    parser.add_argument(
        "--work", type=Path, default=root / "outputs" / "bench", help="datasets, caches, log and scratch runs"
    )
    parser.add_argument("--shared-data", type=Path, default=root.parent / "shared" / "data", help="real-photo samples")
    parser.add_argument("--quick", action="store_true", help="two short shapes cases and a tiny accuracy run only")
    parser.add_argument("--image-size", type=int, default=None, help="shapes image size (default: the config's)")
    parser.add_argument("--no-startup", action="store_true", help="skip the invoke train start-up timing")
    parser.add_argument("--no-serve", action="store_true", help="skip the serving benchmark (bench_serve)")
    parser.add_argument(
        "--no-accuracy", action="store_true", help="skip the accuracy record (cached vs JPEG training runs)"
    )
    parser.add_argument("--no-import", action="store_true", help="skip importing 2,000 and 20,000 generated photos")
    parser.add_argument("--run-case", help=argparse.SUPPRESS)
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    parser.add_argument("--warm-cache", help=argparse.SUPPRESS)
    return parser


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run_case:
        print(json.dumps(run_case(Case(**json.loads(args.run_case)))))
    elif args.prepare:
        prepare_dataset(json.loads(args.prepare))
    elif args.warm_cache:
        warm_cache(json.loads(args.warm_cache))
    else:
        options = BenchOptions(
            args.out, args.work, args.shared_data, args.quick, args.image_size,
            not args.no_startup, not args.no_serve, not args.no_accuracy, not args.no_import,
        )  # fmt: skip
        records = run(options, console)
        if any(r.details.get("regression") for r in records):
            console.print("error: the default pipeline learns worse than the JPEG path (see the accuracy table).")
            return 1
    return 0
