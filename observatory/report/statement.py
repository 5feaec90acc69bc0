"""The statement a journalist can quote, generated from the incident's data.

"Confirmed: metrics show a nation-scale disruption to social media platforms across Pakistan, including
X/Twitter, Facebook, Instagram and YouTube, since 19:05 PKT on 20 January 2024. The restriction is in effect on
all 6 networks measured and is consistent with TLS-based filtering."

Every word follows a field: status -> "Confirmed"/"Suspected" (and "show"/"suggest"), scope -> "nation-scale
... across" / "regional ... in Punjab and Sindh" / "on PTCL", kind -> what is disrupted, techniques -> "consistent
with", the evidence -> "partial", the caller's count of networks measured (from the series) -> "N of M networks
measured". An ended incident gets a restoration notice.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from observatory import catalog
from observatory.incident import Incident
from observatory.report.context import DEFAULT_WINDOW, context_sentences
from observatory.report.countries import country_name, local_date, local_time
from observatory.report.facts import (
    anomaly_share,
    duration_text,
    join_names,
    network_label,
    networks_affected,
    networks_measured,
    platform_names,
)
from observatory.report.history import DEFAULT_LOOKBACK, history_sentence
from observatory.report.history import history as find_history
from observatory.store.base import ContextEvent
from observatory.vocab import IncidentKind, Scope, Status

TECHNIQUE_PHRASES = {
    "dns_tampering": "DNS tampering",
    "tcp_reset": "TCP reset injection",
    "tcp_blackhole": "IP blocking (packets silently dropped)",
    "tls_interference": "TLS-based filtering",
    "tls_mitm": "TLS interception",
    "http_blockpage": "block pages served in place of the sites",
    "http_interference": "HTTP interference",
    "throttling": "bandwidth throttling",
    "unreachable": "blocking that leaves the platforms unreachable",
}
# a shutdown's "technique" is what the probes saw when everything failed, controls included
CONNECTIVITY_PHRASES = {
    "unreachable": "a network shutdown (every destination unreachable, control sites included)",
    "tcp_blackhole": "a network shutdown (packets to every destination dropped, control sites included)",
}
# below this share of anomalous observations in the affected series, the disruption is called "partial"
PARTIAL_SHARE = 0.5
NOUN = {
    "platform_restriction": "restriction",
    "throttling": "throttling",
    "connectivity_loss": "disruption",
    "platform_outage": "outage",
}


def _is_confirmed(inc: Incident) -> bool:
    return inc.status == Status.CONFIRMED or (inc.status == Status.ENDED and inc.confirmed_at is not None)


def what_phrase(inc: Incident) -> str:
    """'social media platforms ..., including X/Twitter and Facebook', 'X/Twitter', 'internet connectivity'."""
    if inc.kind == IncidentKind.CONNECTIVITY_LOSS:
        return "internet connectivity"
    names = platform_names(inc)
    if not names:
        return "online platforms"
    if len(names) == 1:
        return names[0]
    cats = [set(catalog.platforms()[p].categories) if p in catalog.platforms() else set()
            for p in inc.platforms if p != catalog.CONTROL]
    if all("social" in c for c in cats):
        group = "social media platforms"
    elif all("messaging" in c for c in cats):
        group = "messaging apps"
    else:
        group = "online platforms"
    return group + "{where}, including " + join_names(names)


def _regions(inc: Incident) -> str:
    return join_names(list(inc.regions)) if inc.regions else "parts of the country"


def scale_and_where(inc: Incident) -> tuple[str, str]:
    """('nation-scale', ' across Pakistan'), ('regional', ' in Punjab and Sindh, Pakistan'), ('', ' on PTCL ...')."""
    where = country_name(inc.country)
    if inc.scope == Scope.NATIONAL:
        return "nation-scale", f" across {where}"
    if inc.scope == Scope.REGIONAL:
        return "regional", f" in {_regions(inc)}, {where}"
    nets = join_names([network_label(inc, a) for a in inc.asns]) or "one network"
    return "network-level", f" on {nets} in {where}"


def _object(inc: Incident, where: str) -> str:
    what = what_phrase(inc)
    if "{where}" in what:
        return what.replace("{where}", where)
    return what + where


def headline_sentence(inc: Incident) -> str:
    """The first sentence: status, scale, what, where and since when (local time)."""
    confirmed = _is_confirmed(inc)
    lead = "Confirmed: metrics show" if confirmed else "Suspected: early metrics suggest"
    when = f"since {local_time(inc.start, inc.country)} on {local_date(inc.start, inc.country)}"
    if inc.kind == IncidentKind.PLATFORM_OUTAGE or inc.country is None:
        names = join_names(platform_names(inc)) or "online platforms"
        return f"{lead} a global outage of {names}, not specific to any country, {when}."
    scale, where = scale_and_where(inc)
    share = anomaly_share(inc)
    partial = "partial " if share is not None and share < PARTIAL_SHARE else ""
    article = "an" if (partial or scale)[:1] in "aeiou" else "a"
    obj = _object(inc, where)
    # a comma closes an "including A, B and C" list; a plain object runs straight into "since"
    since = (", " if ", including " in obj else " ") + when
    if inc.kind == IncidentKind.THROTTLING:
        return (f"{lead} {article} {partial}{scale} throttling of {obj}{since}: "
                f"the {'platform remains' if len(inc.platforms) == 1 else 'platforms remain'} reachable but "
                f"slowed.")
    return f"{lead} {article} {partial}{scale} disruption to {obj}{since}."


def _networks_clause(inc: Incident, measured: int | None, *, past: bool) -> str | None:
    affected = networks_affected(inc)
    if not affected:
        return None
    verb = "was in effect" if past else "is in effect"
    if measured is None:
        return f"{verb} on {affected} network{'s' if affected != 1 else ''}"
    if affected >= measured:
        if measured == 1:
            return f"{verb} on the one network measured"
        return f"{verb} on all {measured} networks measured"
    return f"{verb} on {affected} of {measured} networks measured"


def _technique_clause(inc: Incident, *, past: bool) -> str | None:
    table = CONNECTIVITY_PHRASES if inc.kind == IncidentKind.CONNECTIVITY_LOSS else TECHNIQUE_PHRASES
    phrases = [table.get(t, TECHNIQUE_PHRASES.get(t, t.replace("_", " "))) for t in inc.techniques
               if t != "throttling" or inc.kind != IncidentKind.THROTTLING]
    if not phrases:
        return None
    return f"{'was' if past else 'is'} consistent with {join_names(phrases)}"


def detail_sentence(inc: Incident, *, measured: int | None = None, past: bool = False) -> str | None:
    """'The restriction is in effect on all 6 networks measured and is consistent with TLS-based filtering.'"""
    if inc.kind == IncidentKind.PLATFORM_OUTAGE or inc.country is None:
        return None
    nets = _networks_clause(inc, networks_measured(inc, measured), past=past)
    tech = _technique_clause(inc, past=past)
    parts = [p for p in (nets, tech) if p]
    if not parts:
        return None
    noun = NOUN.get(inc.kind, "disruption")
    return f"The {noun} {' and '.join(parts)}."


def restoration_sentence(inc: Incident) -> str | None:
    """'Restored: ... reachable again across Pakistan as of 22:10 PKT on 20 January 2024, after 3 hours 5 minutes.'"""
    if inc.end is None:
        return None
    cc = inc.country
    at = f"{local_time(inc.end, cc)} on {local_date(inc.end, cc)}"
    lasted = duration_text((inc.end - inc.start).total_seconds())
    since = local_time(inc.start, cc)
    if local_date(inc.end, cc) != local_date(inc.start, cc):
        since += f" on {local_date(inc.start, cc, year=False)}"
    if inc.kind == IncidentKind.PLATFORM_OUTAGE or cc is None:
        listed = join_names(platform_names(inc)) or "The affected platforms"
        return f"Restored: {listed} recovered worldwide as of {at}, after a global outage of {lasted} (from {since})."
    scale, where = scale_and_where(inc)
    if inc.kind == IncidentKind.CONNECTIVITY_LOSS:
        what, verb = "Internet connectivity", "has returned"
    else:
        names = platform_names(inc)
        what = join_names(names) or "The affected platforms"
        verb = "is reachable again" if len(names) == 1 else "are reachable again"
        if inc.kind == IncidentKind.THROTTLING:
            verb = "is back to normal speed" if len(names) == 1 else "are back to normal speed"
    kind = "throttling" if inc.kind == IncidentKind.THROTTLING else "disruption"
    return f"Restored: {what} {verb}{where} as of {at}, after a {scale} {kind} lasting {lasted} (from {since})."


def statement(inc: Incident, *, history: Iterable[Incident] = (), events: Iterable[ContextEvent] = (),
              networks_measured: int | None = None, event_window: timedelta = DEFAULT_WINDOW,
              lookback: timedelta = DEFAULT_LOOKBACK, now: datetime | None = None) -> str:
    """The full statement: headline (or restoration notice), detail, history and context, as one paragraph.

    `history`: any incidents (the similar earlier ones in the same country are picked here); `events`: context
    events (those overlapping the incident or starting within `event_window` before it are mentioned);
    `networks_measured`: networks measured in the country during the incident, when the caller counted them.
    """
    return " ".join(statement_parts(inc, history=history, events=events, networks_measured=networks_measured,
                                    event_window=event_window, lookback=lookback, now=now))


def statement_parts(inc: Incident, *, history: Iterable[Incident] = (), events: Iterable[ContextEvent] = (),
                    networks_measured: int | None = None, event_window: timedelta = DEFAULT_WINDOW,
                    lookback: timedelta = DEFAULT_LOOKBACK, now: datetime | None = None) -> list[str]:
    parts: list[str] = []
    ended = inc.end is not None
    restored = restoration_sentence(inc)
    parts.append(restored if restored is not None else headline_sentence(inc))
    detail = detail_sentence(inc, measured=networks_measured, past=ended)
    if detail:
        parts.append(detail)
    hist = history_sentence(find_history(inc, history, lookback=lookback))
    if hist:
        parts.append(hist)
    parts.extend(context_sentences(inc, events, window=event_window, now=now))
    return parts

