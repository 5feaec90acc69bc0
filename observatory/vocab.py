"""The closed vocabularies of the observatory (see CONTRACTS.md): one definition each."""

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


class Verdict(StrEnum):
    """Per-measurement verdict: ok, down, unknown, or one of the techniques."""

    OK = "ok"
    DOWN = "down"
    UNKNOWN = "unknown"
    DNS_TAMPERING = "dns_tampering"
    TCP_RESET = "tcp_reset"
    TCP_BLACKHOLE = "tcp_blackhole"
    TLS_INTERFERENCE = "tls_interference"
    TLS_MITM = "tls_mitm"
    HTTP_BLOCKPAGE = "http_blockpage"
    HTTP_INTERFERENCE = "http_interference"
    THROTTLING = "throttling"
    UNREACHABLE = "unreachable"

    @property
    def is_anomaly(self) -> bool:
        return self.value in TECHNIQUES


TECHNIQUES: frozenset[str] = frozenset(t.value for t in Technique)


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
