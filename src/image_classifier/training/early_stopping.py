"""Stop training when a monitored metric stops improving."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """Counts epochs without an improvement of more than ``min_delta``; ``patience=None`` never stops."""

    patience: int | None = None
    min_delta: float = 0.0
    mode: str = "max"
    best: float | None = None
    bad_epochs: int = 0

    @property
    def stopped(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    def update(self, value: float) -> bool:
        """Record one epoch's value; True when training should stop."""
        improved = self.best is None or (
            value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta
        )
        if improved:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.stopped

    def state_dict(self) -> dict[str, float | int | None]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        self.best = state["best"]  # type: ignore[assignment]
        self.bad_epochs = int(state["bad_epochs"] or 0)
