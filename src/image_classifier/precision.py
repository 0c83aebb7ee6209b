"""``trainer.precision``: the names a run accepts, and the autocast dtype (a ``torch`` attribute) each one means."""

from __future__ import annotations

AUTOCAST_DTYPES: dict[str, str | None] = {"32": None, "bf16-mixed": "bfloat16", "16-mixed": "float16"}
PRECISIONS: tuple[str, ...] = tuple(AUTOCAST_DTYPES)
