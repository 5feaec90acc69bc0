"""Per-measurement verdicts, computed from the raw observations of a measurement and its control.

`classify(measurement)` returns a `Classification`: the verdict (ok, down, unknown or a technique), the
throughput when a download was measured, and the rule that decided. Rules are data (see `rules.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

from observatory.measurement import Measurement


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: str
    kbps: float | None = None
    rule: str = ""
    reason: str = ""


def classify(m: Measurement) -> Classification:
    # Placeholder until the verdict rules land: nothing is judged yet.
    return Classification(verdict="unknown", rule="none")
