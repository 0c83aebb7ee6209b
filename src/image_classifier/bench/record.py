"""One row of ``bench.json``: a case's throughput against its ceiling, and the fields its kind of case adds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("img_size", "batch_size", "ceiling_img_s", "measured_img_s", "ratio", "peak_rss_mb")
"""The measured columns every kind of row has (besides ``case`` and ``phase``), ``None`` where it has no value."""


@dataclass
class BenchRecord:
    """A benchmark result: ``case`` and ``phase`` (``train``, ``eval``, ``serve``, ``accuracy``, ``import``),
    the :data:`COLUMNS`, and ``details``."""

    case: str
    phase: str
    img_size: int | None = None
    batch_size: int | None = None
    ceiling_img_s: float | None = None
    measured_img_s: float | None = None
    ratio: float | None = None
    peak_rss_mb: float | None = None
    reference: bool = False
    """A path the project does not take by default, shown for contrast: the ratio goal does not apply."""
    details: dict[str, Any] = field(default_factory=dict)
    """The fields of its kind of case (``epoch_s``, ``workers``, ``first_step_s``, ``p99_ms``, ``regression``...)."""
    absent: frozenset[str] = frozenset()
    """Columns its kind of row leaves out of its JSON (an import has no ceiling, nor a ``ceiling_img_s`` key)."""

    def to_json(self) -> dict[str, Any]:
        """The row as ``bench.json`` holds it: case, phase, the columns, ``reference`` when set, the details."""
        row: dict[str, Any] = {"case": self.case, "phase": self.phase}
        row |= {name: getattr(self, name) for name in COLUMNS if name not in self.absent}
        if self.reference:
            row["reference"] = True
        return row | self.details

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> BenchRecord:
        """The record of a ``bench.json`` row (or of a row another benchmark builds): :meth:`to_json`'s inverse."""
        details = dict(row)
        case, phase, reference = details.pop("case"), details.pop("phase"), details.pop("reference", False)
        columns = {name: details.pop(name) for name in COLUMNS if name in details}
        absent = frozenset(COLUMNS) - columns.keys()
        return cls(case, phase, **columns, reference=bool(reference), details=details, absent=absent)
