"""Deliberate or fault: the one judge of the two facts that tell them apart, used by the detector's assessment
(detect/assess.py), the reports' claim assessment (report/assess.py) and so the `assess` command.

- Selective: the control sites stayed reachable on the affected networks while the platforms failed. A fault
  of the network takes everything down; a filter picks its targets.
- Synchronized: independent networks changed within `SIMULTANEOUS` of each other. Independent faults rarely
  coincide; an order to every operator does.

The thresholds, and why these:
- `SIMULTANEOUS` = 30 minutes. The reports read per-network onsets from the series on a 30-minute grid (their
  transitions), so they cannot tell apart anything closer; and with volunteer probes an onset is only known to
  within about half an hour (the detection issue's own bar for the start error), so a tighter window would call
  one order, seen by sparse probes, staggered. The detector used 15 minutes before, the reports 30.
- `CONTROL_HEALTHY` = 0.9 of the control-site measurements succeeding. Both sides already agreed on it (the
  detector wrote it as fewer than a tenth of them anomalous); a tenth covers the failures any network has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

SIMULTANEOUS = timedelta(minutes=30)
CONTROL_HEALTHY = 0.9


@dataclass(frozen=True, slots=True, kw_only=True)
class Signs:
    """The judge's reading; None where the data cannot say (one network, control not measured)."""

    synchronized: bool | None
    selective: bool | None
    spread: timedelta | None  # between the first and last network onsets
    networks: int  # how many onsets there were


def signs_of_intent(onsets: Sequence[datetime], control_reachable: float | None) -> Signs:
    """`onsets`: each affected network's onset; `control_reachable`: the share of control-site measurements
    that succeeded on those networks during the incident (None: not measured)."""
    spread = max(onsets) - min(onsets) if len(onsets) >= 2 else None
    return Signs(synchronized=None if spread is None else spread <= SIMULTANEOUS,
                 selective=None if control_reachable is None else control_reachable >= CONTROL_HEALTHY,
                 spread=spread, networks=len(onsets))
