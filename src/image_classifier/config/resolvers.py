"""The project's OmegaConf resolvers: ``${launch_time:PATTERN}``, the job's start time agreed by every rank."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from omegaconf import OmegaConf

from image_classifier.distributed import (
    DEFAULT_SETUP_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    broadcast_object,
    init_distributed,
    launched,
)
from image_classifier.errors import report_user_errors

_launch_times: dict[str, str] = {}


@report_user_errors  # inside a resolver, a set-up error would reach the user as Hydra's traceback
def launch_time(pattern: str, _root_: Any = None) -> str:
    """The job's start time formatted with ``pattern``: under torchrun, rank 0's clock, read once and shared.

    The ``${launch_time:...}`` resolver in ``hydra.run.dir``: with Hydra's ``${now:...}`` each rank would read its
    own clock and create its own run dir. Reading it under torchrun joins the job's process group.
    """
    if not launched():
        return datetime.now().strftime(pattern)
    if pattern not in _launch_times:
        init_distributed(
            float(OmegaConf.select(_root_, "trainer.dist_timeout_s", default=DEFAULT_TIMEOUT_S)),
            float(OmegaConf.select(_root_, "trainer.dist_setup_timeout_s", default=DEFAULT_SETUP_TIMEOUT_S)),
        )
        _launch_times[pattern] = broadcast_object(datetime.now().strftime(pattern))
    return _launch_times[pattern]


def register_resolvers() -> None:
    """Make ``${launch_time:PATTERN}`` available to the configs."""
    if not OmegaConf.has_resolver("launch_time"):
        OmegaConf.register_new_resolver("launch_time", launch_time)
