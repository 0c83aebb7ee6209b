"""Errors caused by the user's input: printed as one clear line, never as a traceback."""


class UserError(Exception):
    """Bad input from the user (config, data, checkpoint): reported as one line."""


class ConfigError(UserError):
    """A configuration value that cannot work."""


class DataError(UserError):
    """Missing, incomplete or unreadable data."""


class CheckpointError(UserError):
    """A checkpoint bundle that is missing, unreadable or does not fit."""
