"""The data-quality report as people read it: ``quality.md`` with contact sheets, and a one-line summary.

``quality.json`` (:mod:`image_classifier.data.quality`) sits in the prepared dataset; the readable report
goes to ``reports/data/NAME/`` (``quality.md`` and ``contact_sheets/<class>.png``), replaced as a whole.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from image_classifier.atomic import atomic_path, write_text_atomic
from image_classifier.data.contact_sheets import write_contact_sheets
from image_classifier.data.layout import SPLITS, load_prepared_dataset
from image_classifier.data.quality import NEAR_DUPLICATE_DISTANCE, PhotoTable, analyse, md5_words
from image_classifier.data.sources.decode import hash_all

LISTED = 100
"""Skipped files and duplicate groups listed one by one; the counts always cover all of them."""


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]


def one_line(report: dict[str, Any]) -> str:
    """The report in one line, for the terminal."""
    exact, near = report["exact_duplicates"], report["near_duplicates"]
    ratio = report["counts"]["imbalance_ratio"]
    parts = [
        f"{report['total']} photos in {len(report['classes'])} classes",
        f"imbalance {ratio:g}x" if ratio is not None else "a class is empty",
        f"{report['skipped']['total']} skipped",
        f"{len(exact)} exact and {len(near)} near duplicate groups",
        f"{report['leakage']['groups']} across splits (leakage)",
        f"{report['label_conflicts']['groups']} label conflicts",
    ]
    if report["removed"]:
        parts.append(f"{len(report['removed'])} leaked copies removed (--dedupe)")
    return "; ".join(parts)


def _groups_section(title: str, groups: list[dict[str, Any]]) -> list[str]:
    lines = [f"## {title}: {len(groups)} groups", ""]
    if not groups:
        return [*lines, "None.", ""]
    for number, group in enumerate(groups[:LISTED], start=1):
        flags = [word for word, on in (("leakage", group["cross_split"]), ("label conflict", group["conflict"])) if on]
        distance = f", distance {group['distance']}" if "distance" in group else ""
        lines.append(f"{number}. {' and '.join(flags) or 'within one split'}{distance}:")
        lines += [f"   - `{f['split']}/{f['class']}` `{f['path']}` (from `{f['origin']}`)" for f in group["files"]]
    more = len(groups) - LISTED
    return [*lines, *([f"\n... and {more} more groups (quality.json lists them all)."] if more > 0 else []), ""]


def markdown(name: str, report: dict[str, Any], sheets: dict[str, str]) -> str:
    """``quality.md``: warnings, counts, sizes, skipped files, duplicates, removed copies, contact sheets."""
    lines = [f"# Data quality: `{name}`", "", one_line(report) + ".", "", "## Warnings", ""]
    lines += [f"- {warning}" for warning in report["warnings"]] or ["None."]
    per_split = report["counts"]["per_split"]
    splits = [split for split in SPLITS if split in per_split]
    rows: list[list[object]] = [
        [label, *(per_split[s][label] for s in splits), report["counts"]["per_class"][label]]
        for label in report["classes"]
    ]
    ratio = report["counts"]["imbalance_ratio"]
    lines += ["", "## Counts", "", f"Imbalance ratio (largest class / smallest): {ratio}.", ""]
    lines += table(["class", *splits, "total"], rows)
    measures = ["min", "p5", "median", "p95", "max"]
    size_rows = [[what, *(values.get(m, "") for m in measures)] for what, values in report["sizes"].items()]
    lines += ["", "## Photo sizes (pixels)", "", *table(["", *measures], size_rows)]
    skipped = report["skipped"]
    lines += ["", f"## Skipped files: {skipped['total']}", ""]
    lines += table(["reason", "files"], [[r, n] for r, n in skipped["by_reason"].items()]) if skipped["total"] else []
    lines += [""] + [f"- `{entry['path']}`: {entry['reason']}" for entry in skipped["files"][:LISTED]]
    lines += ["", *_groups_section("Exact duplicates (same bytes)", report["exact_duplicates"])]
    lines += _groups_section("Near duplicates across splits", report["near_duplicates"])
    lines += [f"Near duplicates: {report['near_duplicate_method']}.", ""]
    if report["removed"]:
        lines += [f"## Removed by --dedupe: {len(report['removed'])}", ""]
        lines += [f"- `{f['path']}` (copy of `{', '.join(f['duplicate_of'])}`)" for f in report["removed"]]
        lines.append("")
    lines += ["## Contact sheets", ""]
    lines += [f"### {label}\n\n![{label}](contact_sheets/{quote(file)})\n" for label, file in sheets.items()]
    return "\n".join(lines) + "\n"


def write_report(name: str, dataset: Path, report: dict[str, Any], out: Path) -> Path:
    """Write ``out/quality.md`` and ``out/contact_sheets/`` (replacing what was there); the markdown's path."""
    photos = [(f["split"], f["class"], f["path"]) for f in manifest_rows(dataset)]
    with atomic_path(out, directory=True) as staging:
        sheets = write_contact_sheets(dataset, photos, staging / "contact_sheets", report["classes"])
        names = {label: path.name for label, path in sheets.items()}
        (staging / "quality.md").write_text(markdown(name, report, names), encoding="utf-8")
    return out / "quality.md"


def manifest_rows(dataset: Path) -> list[dict[str, str]]:
    with open(dataset / "manifest.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def analyse_prepared(dataset: Path, workers: int = 0, distance: int = NEAR_DUPLICATE_DISTANCE) -> dict[str, Any]:
    """The quality report of any prepared dataset, from its manifest and its photos (hashed again)."""
    prepared = load_prepared_dataset(dataset)
    rows = manifest_rows(dataset)
    hashes = np.array(hash_all([dataset / row["path"] for row in rows], workers, f"hash {dataset.name}"), np.uint64)
    codes = {label: code for code, label in enumerate(prepared.classes)}
    paths = [row["path"] for row in rows]
    sizes = [(int(row["width"]), int(row["height"])) * 2 for row in rows]
    photos = PhotoTable(
        prepared.classes,
        np.array([SPLITS.index(row["split"]) for row in rows], dtype=np.int8),
        np.array([codes[row["class"]] for row in rows], dtype=np.int32),
        paths,
        paths,
        np.array(sizes, dtype=np.int32).reshape(-1, 4),
        md5_words(row["md5"] for row in rows),
        hashes[:, 0] if len(rows) else hashes,
        hashes[:, 1] if len(rows) else hashes,
    )
    previous = dataset / "quality.json"
    removed = json.loads(previous.read_text())["removed"] if previous.is_file() else []
    report = analyse(photos, prepared.summary.get("skipped", []), distance)
    return {**report, "removed": removed}


def save_quality_json(dataset: Path, report: dict[str, Any]) -> None:
    write_text_atomic(dataset / "quality.json", json.dumps(report, indent=2))
