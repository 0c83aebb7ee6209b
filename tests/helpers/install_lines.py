"""Does a workflow job's install line provide every module its commands import?

:func:`installed_distributions` resolves what a job's ``pip install`` lines install (the project with its extras,
and anything named beside it) against the installed packages' metadata, dependencies and extras included.
:func:`entry_modules` finds what its ``run:`` commands start: ``python -m MODULE``, ``invoke TASK`` (the modules the
task's body imports or runs with ``-m``), ``dvc repro`` (the stages' commands) and console scripts (``dvc``).
:func:`import_restricted` imports those modules in a fresh interpreter whose imports are limited to the resolved
distributions: a meta-path finder refuses every top-level module that an installed distribution outside them
provides (``importlib.metadata.packages_distributions``), as an environment without that distribution would.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT = "image-classifier"
ALWAYS_THERE = {"pip", "setuptools", "wheel"}  # the virtual environment's own
PIP_OPTIONS_WITH_VALUE = {"--index-url", "-i", "--extra-index-url", "-c", "--constraint", "-r", "--requirement"}
SEPARATORS = {"&&", "||", "|", ";", "(", ")", "$(", "`", "then", "do", "if", "!"}


def install_commands(job: dict[str, Any]) -> list[list[str]]:
    """The arguments of each ``pip install`` in a job's ``run:`` steps."""
    found = []
    for line in _lines(job):
        tokens = shlex.split(line, comments=True)
        for index in range(len(tokens) - 1):
            if tokens[index] == "pip" and tokens[index + 1] == "install":
                found.append(tokens[index + 2 :])
    return found


def requirements_of(install_args: Iterable[str]) -> list[Requirement]:
    """The requirements ``pip install ARGS`` names: ``-e ".[a,b]"`` and ``.`` are the project with those extras."""
    named, skip = [], False
    for arg in install_args:
        if skip:
            skip = False
        elif arg in PIP_OPTIONS_WITH_VALUE:
            skip = True
        elif arg.startswith("-"):
            continue
        elif arg == "." or arg.startswith(".["):
            named.append(Requirement(PROJECT + arg[1:]))
        else:
            named.append(Requirement(arg))
    return named


def installed_distributions(requirements: Iterable[Requirement]) -> set[str]:
    """The canonical names of ``requirements`` and of everything they depend on, extras resolved through the
    installed metadata (a dependency that is not installed here, e.g. a CUDA wheel, is left out)."""
    seen: set[tuple[str, str]] = set()
    queue = [(canonicalize_name(r.name), extra) for r in requirements for extra in ("", *r.extras)]
    while queue:
        name, extra = queue.pop()
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": extra}):
                child = canonicalize_name(requirement.name)
                queue += [(child, child_extra) for child_extra in ("", *requirement.extras)]
    return {name for name, _ in seen} | ALWAYS_THERE


def _lines(job: dict[str, Any]) -> list[str]:
    """Every command line of a job's ``run:`` steps, continuation lines joined."""
    text = "\n".join(str(step.get("run", "")) for step in job.get("steps", []))
    return [line for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def _commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line: words between separators, without leading ``sudo``/``VAR=value``."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands, words = [], []
    for token in lexer:
        if token in SEPARATORS or token.startswith("$("):
            commands.append(words)
            words = []
        else:
            words.append(token)
    commands.append(words)
    cleaned = []
    for words in commands:
        while words and (words[0] in {"sudo", "-E", "env", "then", "else"} or re.fullmatch(r"\w+=.*", words[0])):
            words = words[1:]
        if words:
            cleaned.append(words)
    return cleaned


def task_modules(name: str) -> set[str]:
    """The modules ``invoke NAME`` runs (``-m MODULE`` in its command) or imports in its body, from tasks.py."""
    tree = ast.parse((REPO_ROOT / "tasks.py").read_text())
    function = next(
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and name in {node.name, node.name.replace("_", "-"), _task_name(node)}
    )
    modules = set()
    for node in ast.walk(function):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            modules |= set(re.findall(r"-m ([A-Za-z_][\w.]*)", node.value))
    return modules


def _task_name(function: ast.FunctionDef) -> str:
    for decorator in function.decorator_list:
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    return str(keyword.value.value)
    return function.name


def pipeline_modules() -> set[str]:
    """The modules ``dvc repro`` runs: each stage's ``python -m MODULE``."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    return {module for stage in stages.values() for module in re.findall(r"-m ([\w.]+)", str(stage["cmd"]))}


def entry_modules(job: dict[str, Any]) -> set[str]:
    """The Python modules a job's commands start (see the module docstring)."""
    scripts = {entry.name: entry for entry in metadata.entry_points(group="console_scripts")}
    modules: set[str] = set()
    for line in _lines(job):
        for words in _commands(line):
            program = Path(words[0]).name
            if program in {"python", "python3"} and len(words) > 2 and words[1] == "-m":
                modules.add(words[2])
            elif program == "invoke" and len(words) > 1 and not words[1].startswith("-"):
                modules |= {"tasks", *task_modules(words[1])}
            elif program == "dvc" and words[1:2] == ["repro"]:
                modules |= {"dvc.cli", *pipeline_modules()}
            elif program == "dvc" and any("gcs" in word or "DVC_REMOTE" in word for word in words):
                modules |= {"dvc.cli", "dvc_gs"}  # the DVC remote gcs (.dvc/config) is a Google Cloud Storage bucket
            elif program in scripts and program not in {"python", "python3", "pip"}:
                modules.add(scripts[program].module)
    return modules - {"pip"}


_RESTRICTED_IMPORT = r"""
import importlib, importlib.abc, importlib.metadata, json, sys
from packaging.utils import canonicalize_name
allowed, modules = set(json.loads(sys.argv[1])), json.loads(sys.argv[2])
owners = importlib.metadata.packages_distributions()
refused = {}
class Gate(importlib.abc.MetaPathFinder):
    # the only finder: a module of a distribution outside `allowed` is absent (find_spec answers None, as for a
    # module nobody installed); everything else is found by the interpreter's own finders
    def __init__(self, finders):
        self.finders = finders
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        dists = owners.get(top)
        if dists and not any(canonicalize_name(d) in allowed for d in dists):
            refused[top] = sorted(set(dists))
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                return spec
        return None
    def find_distributions(self, *args, **kwargs):
        for finder in self.finders:
            yield from getattr(finder, "find_distributions", lambda *a, **k: ())(*args, **kwargs)
sys.meta_path[:] = [Gate(list(sys.meta_path))]
for module in modules:
    try:
        importlib.import_module(module)
    except ImportError as error:
        dists = refused.get(str(error.name).partition(".")[0])
        why = f"{', '.join(dists)}, which this install line does not install" if dists else "not installed here"
        sys.exit(f"importing {module}: {error} (provided by {why})")
    print("imported", module)
"""


def import_restricted(modules: Iterable[str], distributions: set[str]) -> subprocess.CompletedProcess[str]:
    """Import ``modules`` in a fresh interpreter (this one, with the repository on its path) that can import only
    what ``distributions`` provide, besides the standard library and the project's own code."""
    command = [sys.executable, "-c", _RESTRICTED_IMPORT, json.dumps(sorted(distributions)), json.dumps(sorted(modules))]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
