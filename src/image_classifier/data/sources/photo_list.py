"""A CSV or TSV list of photos: ``path,label[,split]`` rows, paths relative to the file, header optional."""

from __future__ import annotations

import csv
import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from image_classifier.data.sources.discover import Found
from image_classifier.data.sources.user_names import ACCEPTED_SPLITS, check_class_name, split_of
from image_classifier.errors import DataError

PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "image", "image_path", "img", "image_id")
LABEL_COLUMNS = ("label", "class", "class_name", "category", "target", "labels")
SPLIT_COLUMNS = ("split", "subset", "set", "fold_name", "partition")


@dataclass(frozen=True)
class Row:
    """One row of the list: its line number, the photo's path as written, its label and split cells."""

    line: int
    path: str
    label: str
    split: str


def _delimiter(list_file: Path, sample: str) -> str:
    if list_file.suffix.lower() == ".tsv":
        return "\t"
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _columns(first: list[str]) -> tuple[dict[str, int], bool]:
    """Column positions of path, label and split; True when ``first`` is a header row naming them."""
    names = [cell.strip().lower() for cell in first]
    path = next((i for i, name in enumerate(names) if name in PATH_COLUMNS), None)
    label = next((i for i, name in enumerate(names) if name in LABEL_COLUMNS), None)
    if path is not None and label is not None:
        split = next((i for i, name in enumerate(names) if name in SPLIT_COLUMNS), None)
        return {"path": path, "label": label, **({"split": split} if split is not None else {})}, True
    return {"path": 0, "label": 1, **({"split": 2} if len(first) >= 3 else {})}, False


def read_rows(list_file: Path) -> list[Row]:
    """The rows of ``list_file``, blank lines left out; a one-line error for a row too short to read."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"{list_file.name} is not UTF-8 text: {error}") from error
    reader = csv.reader(text.splitlines(), delimiter=_delimiter(list_file, text[:4096]))
    lines = [(number, row) for number, row in enumerate(reader, start=1) if any(cell.strip() for cell in row)]
    if not lines:
        raise DataError(f"{list_file.name} has no rows: expected path,label[,split] rows.")
    columns, header = _columns(lines[0][1])
    rows = []
    for number, cells in lines[1:] if header else lines:
        if len(cells) <= max(columns["path"], columns["label"]):
            raise DataError(f"{list_file.name} line {number}: expected path,label[,split], found {','.join(cells)!r}.")
        split = cells[columns["split"]].strip() if "split" in columns and columns["split"] < len(cells) else ""
        rows.append(Row(number, cells[columns["path"]].strip(), cells[columns["label"]].strip(), split))
    return rows


def relative_path(row: Row, list_file: Path) -> str:
    """The row's path, normalised and relative to the list's folder; an error if it leaves that folder."""
    written = row.path.replace("\\", "/")
    normal = posixpath.normpath(written)
    if PurePosixPath(written).is_absolute() or normal == ".." or normal.startswith("../") or ":" in normal[:2]:
        raise DataError(
            f"{list_file.name} line {row.line}: path '{row.path}' is outside the folder of {list_file.name}; "
            "paths must be relative to the list and stay inside its folder."
        )
    return normal


def listed_files(list_file: Path) -> list[str]:
    """Every path the list names (relative to its folder, checked), in order, each once."""
    return list(dict.fromkeys(relative_path(row, list_file) for row in read_rows(list_file) if row.path))


def read_photo_list(list_file: Path, raw: Path) -> Found:
    """The photos a list names, with their labels and splits (a blank split: assigned at import).

    A row without a path or a label, or naming a missing file, is skipped and counted; a path outside
    the list's folder, an unknown split or a label that cannot be a folder name is a one-line error.
    """
    found = Found(layout=f"list ({list_file.name})")
    folder = list_file.parent
    for row in read_rows(list_file):
        where = f"{list_file.name} line {row.line}"
        if not row.path:
            found.skipped.append({"path": where, "reason": "no path"})
            continue
        relative = relative_path(row, list_file)
        origin = (folder / relative).relative_to(raw).as_posix()
        split = split_of(row.split) if row.split else None
        if row.split and split is None:
            raise DataError(f"{where}: unknown split '{row.split}'; use {ACCEPTED_SPLITS}, or leave it blank.")
        if not row.label:
            found.skipped.append({"path": origin, "reason": f"no label ({where})"})
            continue
        check_class_name(row.label, where)
        if not (folder / relative).is_file():
            found.skipped.append({"path": origin, "reason": f"file not found ({where})"})
            continue
        found.add(split, row.label, origin)
    return found
