"""The facts a report states, read from an incident defensively.

The detector fills `incident.evidence`; its keys may grow or be missing (an incident built by hand, an older
store). Every reader here returns None or an empty value rather than guessing, and the wording leaves out what
it does not know.

Keys read (all optional): `networks` (list of {"asn": "AS17557", "name": "PTCL", "onset": ISO time, "platforms",
"anomalous", "probe_observations"}), `networks_measured` (int, or a list of ASNs) — how many networks were
measured in the country while the incident lasted, `regions_measured` (int or list), `by_technique`
({technique: count}), `probe_observations` and `anomalous` (counts), `control` ({"ok": n, "total": n}: the
control sites during the incident), `restored` (list of {"asn", "end"}: when each network recovered).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from observatory import catalog
from observatory.incident import Incident, parse_iso


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


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value >= 0:
        return value
    if isinstance(value, list | tuple | set):
        return len(value)
    return None


def network_rows(inc: Incident) -> list[dict[str, Any]]:
    rows = inc.evidence.get("networks")
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


def network_names(inc: Incident) -> dict[int, str]:
    """ASN -> the operator's name where the evidence has one ("PTCL")."""
    out: dict[int, str] = {}
    for r in network_rows(inc):
        try:
            asn = int(str(r.get("asn", "")).upper().removeprefix("AS"))
        except ValueError:
            continue
        name = str(r.get("name") or "").strip()
        if name:
            out[asn] = name
    return out


def network_label(inc: Incident, asn: int) -> str:
    name = network_names(inc).get(asn)
    return f"{name} (AS{asn})" if name else f"AS{asn}"


def networks_affected(inc: Incident) -> int:
    return len(inc.asns) or len(network_rows(inc))


def networks_measured(inc: Incident, override: int | None = None) -> int | None:
    """Networks measured in the country during the incident: given by the caller (counted from the store's
    series), else the evidence's `networks_measured`; never fewer than the networks affected."""
    n = override if override is not None else _count(inc.evidence.get("networks_measured"))
    if n is None:
        return None
    return max(n, networks_affected(inc))


def regions_measured(inc: Incident) -> int | None:
    return _count(inc.evidence.get("regions_measured"))


def anomaly_share(inc: Incident) -> float | None:
    """Share of the affected series' observations that were anomalous (None when the evidence lacks counts)."""
    total = inc.evidence.get("probe_observations")
    bad = inc.evidence.get("anomalous")
    if isinstance(total, int | float) and isinstance(bad, int | float) and total > 0:
        return min(1.0, bad / total)
    return None


def onsets(inc: Incident) -> list[datetime]:
    """Each affected network's first anomalous time, from the evidence."""
    out = []
    for r in network_rows(inc):
        t = r.get("onset")
        if isinstance(t, str):
            try:
                parsed = parse_iso(t)
            except ValueError:
                continue
            if parsed is not None:
                out.append(parsed)
    return out


def restorations(inc: Incident) -> list[datetime]:
    """Each network's recovery time where the evidence has it (`restored` or a network row's `end`)."""
    out = []
    rows = inc.evidence.get("restored")
    candidates = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else network_rows(inc)
    for r in candidates:
        t = r.get("end")
        if isinstance(t, str):
            try:
                parsed = parse_iso(t)
            except ValueError:
                continue
            if parsed is not None:
                out.append(parsed)
    return out


def by_technique(inc: Incident) -> dict[str, int]:
    raw = inc.evidence.get("by_technique")
    if isinstance(raw, dict):
        return {str(k): int(v) for k, v in raw.items() if isinstance(v, int | float) and v > 0}
    return {}


def control_reachability(inc: Incident) -> float | None:
    """Share of control-site measurements that succeeded during the incident (None when not known)."""
    c = inc.evidence.get("control")
    if isinstance(c, dict):
        ok, total = c.get("ok"), c.get("total")
        if isinstance(ok, int | float) and isinstance(total, int | float) and total > 0:
            return ok / total
    return None


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
