"""The closed vocabularies of the observatory (see docs/contracts.md): one definition each.

Everything else derives from these: the restriction techniques and the filtering signatures are subsets of
`Technique`, the per-measurement `Verdict` is the outcomes plus every technique, and the incident's kind, scope
and status are the values stored and served. They are `StrEnum`s, so a member is its own wire string.
"""

from __future__ import annotations

from enum import StrEnum


class Technique(StrEnum):
    DNS_TAMPERING = "dns_tampering"
    TCP_RESET = "tcp_reset"
    TCP_BLACKHOLE = "tcp_blackhole"
    TLS_INTERFERENCE = "tls_interference"
    TLS_MITM = "tls_mitm"
    HTTP_BLOCKPAGE = "http_blockpage"
    HTTP_INTERFERENCE = "http_interference"
    THROTTLING = "throttling"
    UNREACHABLE = "unreachable"


TECHNIQUES: frozenset[str] = frozenset(t.value for t in Technique)
# the techniques that describe a restriction: unreachable is a connectivity loss's, throttling its own kind
RESTRICTION_TECHNIQUES: frozenset[str] = TECHNIQUES - {Technique.UNREACHABLE, Technique.THROTTLING}
# a censor's signature, which no failure mode leaves: a blackhole is a timeout, as faults leave too
FILTERING_SIGNATURES: frozenset[str] = RESTRICTION_TECHNIQUES - {Technique.TCP_BLACKHOLE}


class Verdict(StrEnum):
    """Per-measurement verdict: ok, down, unknown, or one of the techniques.

    An enum cannot extend another, and the type checker sees only members written out, so the techniques are
    named here again with their values taken from `Technique`; `_check_verdicts` below fails at import if the
    two ever disagree."""

    OK = "ok"
    DOWN = "down"
    UNKNOWN = "unknown"
    DNS_TAMPERING = Technique.DNS_TAMPERING.value
    TCP_RESET = Technique.TCP_RESET.value
    TCP_BLACKHOLE = Technique.TCP_BLACKHOLE.value
    TLS_INTERFERENCE = Technique.TLS_INTERFERENCE.value
    TLS_MITM = Technique.TLS_MITM.value
    HTTP_BLOCKPAGE = Technique.HTTP_BLOCKPAGE.value
    HTTP_INTERFERENCE = Technique.HTTP_INTERFERENCE.value
    THROTTLING = Technique.THROTTLING.value
    UNREACHABLE = Technique.UNREACHABLE.value

    @property
    def is_anomaly(self) -> bool:
        return self.value in TECHNIQUES


OUTCOMES: frozenset[str] = frozenset({Verdict.OK, Verdict.DOWN, Verdict.UNKNOWN})


def _check_verdicts() -> None:
    """Every technique is a verdict, and a verdict is an outcome or a technique, name and value alike."""
    verdicts = {v.name: v.value for v in Verdict if v.value not in OUTCOMES}
    techniques = {t.name: t.value for t in Technique}
    if verdicts != techniques:
        raise RuntimeError(f"Verdict and Technique disagree: {sorted(set(verdicts.items()) ^ set(techniques.items()))}")


_check_verdicts()


class IncidentKind(StrEnum):
    PLATFORM_RESTRICTION = "platform_restriction"
    THROTTLING = "throttling"
    CONNECTIVITY_LOSS = "connectivity_loss"
    PLATFORM_OUTAGE = "platform_outage"


class Scope(StrEnum):
    NATIONAL = "national"
    REGIONAL = "regional"
    NETWORK = "network"


class Status(StrEnum):
    SUSPECTED = "suspected"
    CONFIRMED = "confirmed"
    ENDED = "ended"


class ClaimVerdict(StrEnum):
    """What the data say of an official explanation (report/assess.py)."""

    SUPPORTED = "supported"
    CONTRADICTED = "contradicted"
    INCONCLUSIVE = "inconclusive"
