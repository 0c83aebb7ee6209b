"""Input drift: recent served inputs (the prediction log) against the training data's statistics.

Each numeric input statistic is compared with the two-sample Kolmogorov-Smirnov test
(``scipy.stats.ks_2samp``), and the predicted-class mix with a chi-square test against the training
class frequencies; p-values are Bonferroni-corrected over the tests run.

``python -m image_classifier.drift --log predictions.jsonl --reference data/processed/shapes/train --out reports/drift``
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from PIL import Image
from scipy import stats

from image_classifier.atomic import write_text_atomic
from image_classifier.errors import DataError, report_user_errors
from image_classifier.image_stats import image_stats

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FEATURES = ("width", "height", "aspect", "brightness", "contrast", "red", "green", "blue", "saturation")


def reference_stats(folder: Path, limit: int = 2000, seed: int = 0) -> tuple[list[dict[str, float]], Counter[str]]:
    """Statistics of (up to ``limit``, sampled) training images in an ImageFolder layout, and class counts."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"Reference folder not found: {folder} (the training split, e.g. data/processed/shapes/train).")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"No images under {folder}.")
    classes = Counter(p.parent.name for p in files)
    if len(files) > limit:
        picks = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
        files = [files[i] for i in sorted(picks)]
    rows = []
    for path in files:
        with Image.open(path) as image:
            rows.append(image_stats(image))
    return rows, classes


def read_log(path: str | Path, last: int = 1000) -> list[dict[str, Any]]:
    """The ``last`` records of a prediction log: a local file, or a URL fsspec opens (``gs://BUCKET/...`` with the
    ``gcs`` extra, ``https://...``), such as the bucket object the deployed service writes."""
    path = str(path)
    records = []
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError:
                        raise DataError(f"{path}:{number} is not a JSON line.") from None
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(f"Prediction log not found: {path} (set IC_PREDICTION_LOG when serving).") from None
    if not records:
        raise DataError(f"{path} holds no predictions yet.")
    return records[-last:]


def drift_report(
    reference: list[dict[str, float]],
    reference_classes: Counter[str],
    recent: list[dict[str, Any]],
    alpha: float = 0.05,
) -> dict[str, Any]:
    """KS tests per input statistic and a chi-square test on predicted classes, Bonferroni-corrected."""
    tests: dict[str, dict[str, Any]] = {}
    for feature in FEATURES:
        ref = np.array([row[feature] for row in reference])
        cur = np.array([row["input"][feature] for row in recent if feature in row.get("input", {})])
        if len(cur) == 0:
            continue
        result = stats.ks_2samp(ref, cur)
        tests[feature] = {
            "test": "ks_2samp",
            "statistic": float(result.statistic),
            "p_value": float(result.pvalue),
            "reference_mean": float(ref.mean()),
            "recent_mean": float(cur.mean()),
        }
    labels = sorted(reference_classes)
    predicted = Counter(row["label"] for row in recent if "label" in row)
    if predicted and labels:
        observed = np.array([predicted.get(label, 0) for label in labels], dtype=float)
        expected_share = np.array([reference_classes[label] for label in labels], dtype=float)
        expected = expected_share / expected_share.sum() * observed.sum()
        result = stats.chisquare(observed, expected)
        tests["predicted_class"] = {
            "test": "chisquare",
            "statistic": float(result.statistic),
            "p_value": float(result.pvalue),
            "reference_share": dict(
                zip(labels, (expected_share / expected_share.sum()).round(4).tolist(), strict=True)
            ),
            "recent_share": dict(zip(labels, (observed / observed.sum()).round(4).tolist(), strict=True)),
        }
    threshold = alpha / max(len(tests), 1)
    for entry in tests.values():
        entry["drift"] = entry["p_value"] < threshold
    return {
        "recent_samples": len(recent),
        "reference_samples": len(reference),
        "alpha": alpha,
        "corrected_threshold": threshold,
        "drift_detected": any(entry["drift"] for entry in tests.values()),
        "drifted": sorted(name for name, entry in tests.items() if entry["drift"]),
        "tests": tests,
    }


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """``drift_report.json`` and a readable ``drift_report.md`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "drift_report.json", out_dir / "drift_report.md"
    write_text_atomic(json_path, json.dumps(report, indent=2) + "\n")
    verdict = f"drift in: {', '.join(report['drifted'])}" if report["drift_detected"] else "no drift detected"
    lines = [
        "# Input drift report",
        "",
        f"{report['recent_samples']} recent inputs against {report['reference_samples']} training images: "
        f"**{verdict}** (alpha {report['alpha']}, Bonferroni threshold {report['corrected_threshold']:.4g}).",
        "",
        "| check | test | statistic | p-value | drift |",
        "|---|---|---|---|---|",
    ]
    for name, entry in report["tests"].items():
        drift = "yes" if entry["drift"] else "no"
        lines.append(f"| {name} | {entry['test']} | {entry['statistic']:.4f} | {entry['p_value']:.3g} | {drift} |")
    write_text_atomic(md_path, "\n".join(lines) + "\n")
    return json_path, md_path


@report_user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image_classifier.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, help="prediction log (JSON lines) written by the API: path or URL")
    parser.add_argument("--reference", required=True, type=Path, help="training images folder (ImageFolder layout)")
    parser.add_argument("--out", default=Path("reports/drift"), type=Path, help="output directory")
    parser.add_argument("--last", default=1000, type=int, help="how many recent predictions to compare")
    parser.add_argument("--alpha", default=0.05, type=float, help="significance level before correction")
    args = parser.parse_args(argv)
    recent = read_log(args.log, args.last)
    reference, classes = reference_stats(args.reference)
    report = drift_report(reference, classes, recent, args.alpha)
    json_path, md_path = write_report(report, args.out)
    verdict = f"DRIFT in {', '.join(report['drifted'])}" if report["drift_detected"] else "no drift detected"
    print(f"{verdict} ({report['recent_samples']} recent inputs); wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
