"""Print the project's dependencies (plus the named extras) from pyproject.toml, one per line.

Lets the image install dependencies in a layer that only changes when pyproject.toml does:
``python pyproject_requirements.py pyproject.toml serve > requirements.txt``.
"""

from __future__ import annotations

import sys

import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as file:
        project = tomllib.load(file)["project"]
    optional = project.get("optional-dependencies", {})
    unknown = [extra for extra in extras if extra not in optional]
    if unknown:
        raise SystemExit(f"error: unknown extra(s) {', '.join(unknown)}; known: {', '.join(optional)}")
    return [*project["dependencies"], *(dep for extra in extras for dep in optional[extra])]


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], [extra for arg in sys.argv[2:] for extra in arg.split(",") if extra])))
