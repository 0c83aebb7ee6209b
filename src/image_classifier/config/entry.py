"""The Hydra entry points' wrapper: a config that does not compose is one ``error:`` line, not Hydra's report.

Hydra reports a bad override (a wrong type, a misspelt key, an unknown option) in several lines after
it has set up the run. :func:`hydra_entry` composes the command line's overrides once beforehand and
turns such an error into one line naming the key, the value and what is valid; errors raised by the
task itself (:class:`~image_classifier.errors.UserError`) are one line too. :func:`config_dir` is the
``configs/`` directory, ready for Hydra.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from image_classifier.config.resolvers import register_resolvers
from image_classifier.config.schema import register_schemas
from image_classifier.errors import ConfigError, report_user_errors
from image_classifier.project import project_root


def config_dir() -> str:
    """The ``configs/`` directory, with the resolvers and schemas its files use registered."""
    os.environ.setdefault("PROJECT_ROOT", str(project_root()))
    register_resolvers()
    register_schemas()
    return str(project_root() / "configs")


def describe_composition_error(error: BaseException) -> str:
    """One line from a Hydra/OmegaConf composition error: the override, OmegaConf's reason, close key names."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    cause = error.__cause__
    if not isinstance(cause, OmegaConfBaseException):  # e.g. an unknown group option: message and options
        head = [line.rstrip(":") for line in lines if not line.startswith(("Config search path", "provider="))]
        return f"{head[0]}; {head[1].lower()}: {', '.join(head[2:])}" if len(head) > 2 else "; ".join(head)
    override = lines[0].removeprefix("Error merging override ").removeprefix("Could not override ").strip("'.")
    reason = str(cause).splitlines()[0].strip()
    return f"{override}: {reason}{_close_keys(cause)}"


def _close_keys(cause: OmegaConfBaseException) -> str:
    """``did you mean ...?`` for a key that is not in its schema."""
    schema, key = getattr(cause, "object_type", None), getattr(cause, "key", None)
    missing_key = isinstance(cause, (ConfigAttributeError, ConfigKeyError))
    if not (missing_key and dataclasses.is_dataclass(schema) and isinstance(key, str)):
        return ""
    names = [f.name for f in dataclasses.fields(schema)]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    parent = str(getattr(cause, "full_key", "")).rpartition(".")[0]
    return f"; did you mean {', '.join(f'{parent}.{name}' if parent else name for name in close)}?" if close else ""


def check_composes(config_name: str, argv: list[str]) -> None:
    """Compose ``config_name`` with the command line's overrides; raise a one-line ``ConfigError`` if it fails."""
    if any(arg.startswith("-") for arg in argv):  # Hydra's own flags (help, --multirun sweeps, ...): its business
        return
    try:
        with initialize_config_dir(config_dir(), version_base="1.3", job_name=config_name):
            compose(config_name, overrides=argv)
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(describe_composition_error(error)) from None


def hydra_entry(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """``@hydra.main`` over ``configs/<config_name>.yaml``, with one-line errors (see the module docstring)."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        hydra_main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(
            report_user_errors(task)
        )

        @functools.wraps(task)
        @report_user_errors
        def main() -> Any:
            check_composes(config_name, sys.argv[1:])
            return hydra_main()

        return main

    return decorate
