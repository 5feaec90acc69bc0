"""The OONI failure vocabulary, and the one place where raw OS/library errors become failure strings.

A network's behaviour is data: probe code catches an exception at the boundary and records
`failure_from_exception(exc)` in the measurement; it never lets a reset or a timeout escape as an error.
"""

from __future__ import annotations

import errno
import socket
import ssl

CONNECTION_REFUSED = "connection_refused"
CONNECTION_RESET = "connection_reset"
GENERIC_TIMEOUT = "generic_timeout_error"
EOF_ERROR = "eof_error"
DNS_NXDOMAIN = "dns_nxdomain_error"
DNS_NO_ANSWER = "dns_no_answer"
DNS_REFUSED = "dns_refused_error"
DNS_SERVER_FAILURE = "dns_server_failure"
ANDROID_DNS_NO_DATA = "android_dns_cache_no_data"
SSL_INVALID_HOSTNAME = "ssl_invalid_hostname"
SSL_UNKNOWN_AUTHORITY = "ssl_unknown_authority"
SSL_INVALID_CERTIFICATE = "ssl_invalid_certificate"
SSL_FAILED_HANDSHAKE = "ssl_failed_handshake"
HOST_UNREACHABLE = "host_unreachable"
NETWORK_UNREACHABLE = "network_unreachable"
CONNECTION_ABORTED = "connection_aborted"
UNKNOWN_PREFIX = "unknown_failure: "

DNS_FAILURES = frozenset({DNS_NXDOMAIN, DNS_NO_ANSWER, DNS_REFUSED, DNS_SERVER_FAILURE, ANDROID_DNS_NO_DATA})
NXDOMAIN_LIKE = frozenset({DNS_NXDOMAIN, ANDROID_DNS_NO_DATA})
SSL_CERT_FAILURES = frozenset({SSL_INVALID_HOSTNAME, SSL_UNKNOWN_AUTHORITY, SSL_INVALID_CERTIFICATE})

_ERRNO_FAILURES = {
    errno.ECONNREFUSED: CONNECTION_REFUSED,
    errno.ECONNRESET: CONNECTION_RESET,
    errno.ETIMEDOUT: GENERIC_TIMEOUT,
    errno.EHOSTUNREACH: HOST_UNREACHABLE,
    errno.ENETUNREACH: NETWORK_UNREACHABLE,
    errno.ECONNABORTED: CONNECTION_ABORTED,
    errno.EPIPE: CONNECTION_RESET,
}

# getaddrinfo's errors (the system resolver): "no such name" is NXDOMAIN; the rest are resolver failures.
_GAI_FAILURES = {
    socket.EAI_NONAME: DNS_NXDOMAIN,
    getattr(socket, "EAI_NODATA", -5): DNS_NO_ANSWER,
    socket.EAI_AGAIN: DNS_SERVER_FAILURE,
    socket.EAI_FAIL: DNS_SERVER_FAILURE,
}


def failure_from_exception(exc: BaseException) -> str:
    """Maps an exception raised by sockets, ssl, asyncio, dnspython or httpx to an OONI failure string."""
    if isinstance(exc, socket.gaierror):
        return _GAI_FAILURES.get(exc.errno, DNS_SERVER_FAILURE)
    if isinstance(exc, ssl.SSLCertVerificationError):
        msg = str(exc).lower()
        if "hostname" in msg or "ip address mismatch" in msg:
            return SSL_INVALID_HOSTNAME
        if "unable to get local issuer" in msg or "self-signed" in msg or "self signed" in msg:
            return SSL_UNKNOWN_AUTHORITY
        return SSL_INVALID_CERTIFICATE
    if isinstance(exc, ssl.SSLEOFError | EOFError):
        return EOF_ERROR
    if isinstance(exc, ssl.SSLZeroReturnError):
        return EOF_ERROR
    if isinstance(exc, TimeoutError | socket.timeout):
        return GENERIC_TIMEOUT
    if isinstance(exc, ConnectionResetError):
        return CONNECTION_RESET
    if isinstance(exc, ConnectionRefusedError):
        return CONNECTION_REFUSED
    if isinstance(exc, ssl.SSLError):
        reason = (getattr(exc, "reason", "") or "").upper()
        if "EOF" in reason or "UNEXPECTED_EOF" in str(exc).upper():
            return EOF_ERROR
        return SSL_FAILED_HANDSHAKE
    if isinstance(exc, OSError) and exc.errno in _ERRNO_FAILURES:
        return _ERRNO_FAILURES[exc.errno]
    name = type(exc).__name__
    mapped = _by_class_name(name)
    if mapped:
        return mapped
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc:
        inner = failure_from_exception(cause)
        if not inner.startswith(UNKNOWN_PREFIX):
            return inner
    return f"{UNKNOWN_PREFIX}{name}: {exc}"[:200]


def _by_class_name(name: str) -> str | None:
    # dnspython and httpx are optional at this layer: match by class name so this module imports neither.
    return {
        "NXDOMAIN": DNS_NXDOMAIN,
        "NoAnswer": DNS_NO_ANSWER,
        "NoNameservers": DNS_SERVER_FAILURE,
        "LifetimeTimeout": GENERIC_TIMEOUT,
        "Timeout": GENERIC_TIMEOUT,
        "ConnectTimeout": GENERIC_TIMEOUT,
        "ReadTimeout": GENERIC_TIMEOUT,
        "WriteTimeout": GENERIC_TIMEOUT,
        "PoolTimeout": GENERIC_TIMEOUT,
        "RemoteProtocolError": EOF_ERROR,
        "IncompleteRead": EOF_ERROR,
    }.get(name)
