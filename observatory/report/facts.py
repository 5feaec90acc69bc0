"""The facts a report states, read from an incident's typed evidence (observatory.incident.Evidence).

What the detector writes is what is read here, field by field. A field may be missing (an incident built by
hand, seen only by outside-in signals, or from an older store): every reader returns None or an empty value
rather than guessing, and the wording leaves out what it does not know. What the evidence does not hold (how
many networks and regions were measured, the control sites' reachability, when each network recovered) the
callers count from the store's series (report/render.py) and pass in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from observatory import catalog
from observatory.incident import Incident, NetworkEvidence


def join_names(names: Sequence[str]) -> str:
    """'A', 'A and B', 'A, B and C'."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def ordered_platforms(ids: Sequence[str]) -> list[str]:
    """Catalog order (X/Twitter, Facebook, Instagram, YouTube, ...), whatever order the detector listed them in."""
    order = {p: i for i, p in enumerate(catalog.platform_ids())}
    return sorted((p for p in ids if p != catalog.CONTROL), key=lambda p: (order.get(p, len(order)), p))


def platform_names(inc: Incident) -> list[str]:
    return [catalog.display_name(p) for p in ordered_platforms(inc.platforms)]


def network_rows(inc: Incident) -> tuple[NetworkEvidence, ...]:
    return inc.evidence.networks or ()


def network_names(inc: Incident) -> dict[int, str]:
    """ASN -> the operator's name where the evidence has one ("PTCL")."""
    return {r.asn: r.name.strip() for r in network_rows(inc) if r.name.strip()}


def network_label(inc: Incident, asn: int) -> str:
    name = network_names(inc).get(asn)
    return f"{name} (AS{asn})" if name else f"AS{asn}"


def networks_affected(inc: Incident) -> int:
    return len(inc.asns) or len(network_rows(inc))


def networks_measured(inc: Incident, measured: int | None = None) -> int | None:
    """Networks measured in the country during the incident, as the caller counted them from the store's
    series (None: not counted); never fewer than the networks affected."""
    if measured is None:
        return None
    return max(measured, networks_affected(inc))


def anomaly_share(inc: Incident) -> float | None:
    """Share of the affected series' observations that were anomalous (None when the evidence lacks counts)."""
    total, bad = inc.evidence.probe_observations, inc.evidence.anomalous
    if total is not None and bad is not None and total > 0:
        return min(1.0, bad / total)
    return None


def onsets(inc: Incident) -> list[datetime]:
    """Each affected network's first anomalous time, from the evidence."""
    return [r.onset for r in network_rows(inc) if r.onset is not None]


def by_technique(inc: Incident) -> dict[str, int]:
    return {k: v for k, v in (inc.evidence.by_technique or {}).items() if v > 0}


def duration_text(seconds: float) -> str:
    """'3 hours 5 minutes', '2 days 4 hours', '45 minutes'."""
    minutes = max(0, round(seconds / 60))
    days, rem = divmod(minutes, 1440)
    hours, mins = divmod(rem, 60)

    def unit(n: int, word: str) -> str:
        return f"{n} {word}{'s' if n != 1 else ''}"

    if days:
        return unit(days, "day") + (f" {unit(hours, 'hour')}" if hours else "")
    if hours:
        return unit(hours, "hour") + (f" {unit(mins, 'minute')}" if mins else "")
    return unit(mins, "minute")
