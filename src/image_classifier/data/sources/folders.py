"""Finding a distribution's folders inside whatever nesting an archive or a copy gave it."""

from __future__ import annotations

from pathlib import Path


def holds_class_folders(path: Path) -> bool:
    """Whether ``path`` is a folder with at least one subfolder (a class) that holds files directly."""
    return path.is_dir() and any(
        child.is_dir() and any(f.is_file() for f in child.iterdir()) for child in path.iterdir()
    )


def find_class_folder(raw: Path, name: str) -> Path | None:
    """The deepest folder called ``name`` under ``raw`` whose subfolders (the classes) hold files."""
    matches = [path for path in Path(raw).rglob(name) if holds_class_folders(path)]
    if Path(raw).name == name and holds_class_folders(Path(raw)):
        matches.append(Path(raw))
    return max(matches, key=lambda p: (len(p.parts), str(p)), default=None)


def class_files(folder: Path) -> dict[str, list[Path]]:
    """``{class name: sorted files}`` for the class subfolders of ``folder`` (hidden entries ignored)."""
    return {
        child.name: sorted(f for f in child.rglob("*") if f.is_file() and not f.name.startswith("."))
        for child in sorted(folder.iterdir())
        if child.is_dir() and not child.name.startswith(".")
    }
