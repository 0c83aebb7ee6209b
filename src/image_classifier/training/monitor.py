"""The monitored metric: which epoch is best (for ``best.pt``) and when training stops early."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Monitor:
    """``name`` (e.g. ``val/accuracy``) and whether higher (``max``) or lower (``min``) is better."""

    name: str
    mode: str = "max"
    best: float | None = None
    best_epoch: int | None = None

    def is_better(self, value: float, min_delta: float = 0.0) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta`` (NaN never does)."""
        if math.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best + min_delta if self.mode == "max" else value < self.best - min_delta

    def update(self, value: float, epoch: int) -> bool:
        """Record one epoch's value; True when it is the new best."""
        improved = self.is_better(value)
        if improved:
            self.best, self.best_epoch = value, epoch
        return improved

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state.get("best_epoch")


@dataclass
class EarlyStopping:
    """Stops after ``patience`` epochs that did not beat the monitor's best by more than ``min_delta``, or after
    an epoch worse than ``reference`` (the linear probe's value) by more than ``margin``.

    ``patience=None`` and ``margin=None`` never stop. Call :meth:`observe` with an epoch's value before
    ``monitor.update``.
    """

    monitor: Monitor
    patience: int | None = None
    min_delta: float = 0.0
    bad_epochs: int = 0
    reference: float | None = None
    margin: float | None = None
    below_reference: bool = False

    @property
    def stopped(self) -> bool:
        return self.below_reference or (self.patience is not None and self.bad_epochs >= self.patience)

    @property
    def reason(self) -> str:
        if self.below_reference:
            return f"{self.monitor.name} fell more than {self.margin} below the linear probe's {self.reference:.4f}"
        return f"no {self.monitor.name} improvement in {self.patience} epochs"

    def observe(self, value: float) -> bool:
        """Count one epoch; True when training should stop."""
        self.bad_epochs = 0 if self.monitor.is_better(value, self.min_delta) else self.bad_epochs + 1
        if self.reference is not None and self.margin is not None and not math.isnan(value):
            worse_by = self.reference - value if self.monitor.mode == "max" else value - self.reference
            self.below_reference = worse_by > self.margin
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        return {"bad_epochs": self.bad_epochs, "reference": self.reference, "below_reference": self.below_reference}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad_epochs = int(state["bad_epochs"] or 0)
        self.reference = state.get("reference")
        self.below_reference = bool(state.get("below_reference", False))
