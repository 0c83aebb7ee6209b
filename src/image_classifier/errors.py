"""Errors caused by the user's input: printed as one clear line, never as a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from image_classifier.redact import redact

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """Bad input from the user (config, data, checkpoint): reported as one line."""


class ConfigError(UserError):
    """A configuration value that cannot work."""


class DataError(UserError):
    """Missing, incomplete or unreadable data."""


class CheckpointError(UserError):
    """A checkpoint bundle that is missing, unreadable or does not fit."""


def report_user_errors(func: F) -> F:
    """Turn a :class:`UserError` into one ``error: ...`` line on stderr (URIs redacted) and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except UserError as error:
            print(f"error: {redact(str(error))}", file=sys.stderr)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
