"""Scrubbing: no address of the person running a probe in anything the observatory stores or publishes.

Addresses are found in every string and dictionary key of a document, in any spelling a tool may have written
(IPv4 plain or zero-padded, IPv6 compressed, full or upper-case, IPv4-mapped or NAT64, reversed as
`in-addr.arpa` / `ip6.arpa`), and compared as addresses, not as text. Two rules, applied together:

* the probe's own address (`probe_ip`, when it is a real one) is removed wherever it appears;
* every address that is not one of the servers the measurement talked to is removed too, because an address
  the document does not explain may be the probe's (a whoami answer, an X-Forwarded-For header, the second
  address of a dual-stack probe, or any address at all when `probe_ip` is missing or was already replaced).

Which addresses are servers is read from the document's structure: DNS answers, the resolvers asked, the
addresses connected to (tcp_connect, TLS/QUIC handshakes, network events), the control's view of the target,
and a target given as an address literal. Those are what the measurement is about and are kept.

Pure (no I/O); the common case, a document whose every address is a server's, costs one regular-expression
scan and returns the document untouched.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import msgspec

SCRUBBED = "[scrubbed]"
PRIVATE_FIELDS = ("probe_ip", "probe_city")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Finding addresses costs one pass of two literal-led patterns over the text (Python's regex engine skips to the
# literal quickly, where an alternation of full address patterns would be tried at every position): a dot, an
# octet, a dot, an octet, a dot for IPv4; two colons at most four hex digits apart for IPv6. Each hit is widened to
# its token and read as an address in Python.
_V4_HINT = re.compile(r"\.[0-9]{1,3}\.[0-9]{1,3}\.")
_V6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_TOKEN_CHARS = frozenset("0123456789abcdefABCDEF.:")
_V4_IN = re.compile(r"(?<![0-9])(?<![0-9]\.)[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![0-9]|\.[0-9])")
_VERSION_BEFORE = re.compile(r"[A-Za-z]/$|rv:$|[Vv]ersion[ /]?$")  # "Chrome/104.0.0.0", "rv:1.9.1.7"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Keys whose values name servers: a DNS answer's address, a resolver, an endpoint connected to.
_SERVER_KEYS = frozenset({"ipv4", "ipv6", "ip", "address", "addrs", "resolver_address", "resolver_ip",
                          "resolver_hostname", "client_resolver", "control_resolver", "target", "exit_ip"})
# Whole subtrees that name only servers: the test helpers (OONI's backends) a probe was given.
_SERVER_TREES = frozenset({"test_helpers"})
# Lists or maps whose entries are endpoints ("ip:port" keys in the control's tcp_connect).
_ENDPOINT_MAPS = frozenset({"tcp_connect"})
_URL_KEYS = frozenset({"input", "url"})
@lru_cache(maxsize=1 << 14)
def _v4(text: str) -> Address | None:
    octets = text.split(".")
    if any(int(o) > 255 for o in octets):
        return None
    return ipaddress.IPv4Address(".".join(str(int(o)) for o in octets))  # zero-padded octets read as decimal


def _v6(text: str) -> Address:
    """ValueError when `text` is not an IPv6 address."""
    a = _v6_or_none(text)
    if a is None:
        raise ValueError(text)
    return a


@lru_cache(maxsize=1 << 14)
def _v6_or_none(text: str) -> Address | None:
    # cached, failures too: documents name the same servers, and the same times ("10:00:00"), again and again
    try:
        return _unwrap(ipaddress.IPv6Address(text))
    except ValueError:
        return None


def _unwrap(addr: Address) -> Address:
    """An IPv4 address written as IPv6 (mapped ::ffff:a.b.c.d, or NAT64 64:ff9b::a.b.c.d) is that IPv4 address."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in _NAT64:
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return addr


def _token(text: str, i: int) -> tuple[int, int]:
    """The run of address characters around position i."""
    start, end = i, i
    while start > 0 and text[start - 1] in _TOKEN_CHARS:
        start -= 1
    n = len(text)
    while end < n and text[end] in _TOKEN_CHARS:
        end += 1
    return start, end


def _read(text: str, start: int, end: int) -> list[tuple[int, int, Address]]:
    """The addresses written in text[start:end] (one token), as (start, end, address) spans of `text`."""
    tok = text[start:end]
    after = text[end:end + 12].lower()
    try:
        if after.startswith("in-addr.arpa") and tok.endswith("."):
            octets = tok[:-1].split(".")[-4:]
            a = _v4(".".join(reversed(octets))) if len(octets) == 4 and all(o.isdigit() for o in octets) else None
            return [(end - 1 - len(".".join(octets)), end + 12, a)] if a else []
        if after.startswith("ip6.arpa") and tok.endswith("."):
            nibbles = tok[:-1].split(".")[-32:]
            if len(nibbles) == 32 and all(len(x) == 1 for x in nibbles):
                a6 = _unwrap(ipaddress.IPv6Address(int("".join(reversed(nibbles)), 16)))
                return [(end - 1 - 63, end + 8, a6)]
            return []
        core = tok.strip(".")
        if core.count(":") >= 2:
            lead = tok.index(core)
            try:
                return [(start + lead, start + lead + len(core), _v6(core))]
            except ValueError:
                pass  # not one address: perhaps "1.2.3.4:443", or a time
    except ValueError:
        return []
    found: list[tuple[int, int, Address]] = []
    for m in _V4_IN.finditer(tok):
        s = start + m.start()
        if _VERSION_BEFORE.search(text, max(0, s - 8), s):
            continue
        a4 = _v4(m.group())
        if a4 is not None:
            found.append((s, s + len(m.group()), a4))
    return found


def _spans(text: str) -> list[tuple[int, int, Address]]:
    """Every address written in `text`, with where it is written."""
    tokens: set[tuple[int, int]] = set()
    for hint in (_V4_HINT, _V6_HINT):
        last_end = -1
        for m in hint.finditer(text):
            if m.start() < last_end:
                continue
            span = _token(text, m.start())
            last_end = span[1]
            tokens.add(span)
    found: list[tuple[int, int, Address]] = []
    for start, end in sorted(tokens):
        found += _read(text, start, end)
    return found


def address(text: str) -> Address | None:
    """`text` as an address if it is one in any spelling scrubbing understands (a host:port or [v6]:port too)."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    if text.count(".") == 3 and text.replace(".", "").isdigit():
        try:
            return _v4(text)
        except ValueError:
            return None
    if text.count(":") >= 2:
        try:
            return _v6(text.split("%")[0])
        except ValueError:
            return None
    return None


def addresses_in(text: str) -> list[Address]:
    return [a for _, _, a in _spans(text)]


def scrub_text(text: str, private: Callable[[Address], bool]) -> str:
    """`text` with every address for which `private` is true replaced by SCRUBBED."""
    spans = [(s, e) for s, e, a in _spans(text) if private(a)]
    if not spans:
        return text
    out, pos = [], 0
    for s, e in spans:
        if s >= pos:
            out += [text[pos:s], SCRUBBED]
            pos = e
    return "".join(out) + text[pos:]


def _host_of(url: str) -> Address | None:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return address(host) if host else None


def _strings(value: Any) -> Iterable[tuple[bool, str]]:
    """Every string in a JSON value: (is a key, text)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield False, node
        elif isinstance(node, dict):
            for k, v in node.items():
                yield True, k
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)


def server_addresses(doc: Any) -> set[Address]:
    """The addresses the document names as servers (see the module's docstring)."""
    found: set[Address] = set()

    def add(value: Any) -> None:
        values: Iterable[Any] = value if isinstance(value, list) else (value,)
        for v in values:
            if isinstance(v, str) and (a := address(v)) is not None:
                found.add(a)

    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k in _SERVER_KEYS:
                    add(v)
                elif k in _SERVER_TREES:
                    for _, text in _strings(v):
                        add(text)
                        if (a := _host_of(text)) is not None:
                            found.add(a)
                elif k in _URL_KEYS and isinstance(v, str) and (a := _host_of(v)) is not None:
                    found.add(a)
                if k in _ENDPOINT_MAPS and isinstance(v, dict):
                    add(list(v))
                if isinstance(v, dict | list):
                    stack.append(v)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
    return found


def probe_address(doc: dict[str, Any]) -> Address | None:
    """The probe's own address when the document gives a real one (OONI's published data says 127.0.0.1)."""
    ip = doc.get("probe_ip")
    a = address(ip) if isinstance(ip, str) else None
    return None if a is None or a.is_loopback or a.is_unspecified else a


def _says_nothing(a: Address) -> bool:
    """Addresses that cannot point at anyone: this host, "any", and reserved or multicast ranges (OONI's own
    replacement for the probe's address is 127.0.0.1; Tor's version numbers look like 0.x.y.z)."""
    return a.is_loopback or a.is_unspecified or a.is_multicast or a.is_reserved or (
        isinstance(a, ipaddress.IPv4Address) and a.packed[0] == 0)


def _walk(value: Any, fix: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict):
        return {fix(k): _walk(v, fix) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, fix) for v in value]
    return value


def _without_private_fields(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in PRIVATE_FIELDS} if any(k in doc for k in PRIVATE_FIELDS) \
        else doc


def _text_of(doc: dict[str, Any], given: bytes | None) -> str:
    # the caller's JSON only if it is this document's and hides nothing behind \u escapes
    return (given if given is not None and b"\\u" not in given else msgspec.json.encode(doc)).decode(
        "utf-8", "replace")


_SERVER_CONTEXT = re.compile(
    r'"(?:' + "|".join(sorted(_SERVER_KEYS)) + r')"\s*:\s*\[?\s*"\[?$'
    r'|"tcp_connect"\s*:\s*\{\s*"$|"(?:input|url)"\s*:\s*"[a-z]+://\[?$')


def _all_in_server_places(text: str, spans: list[tuple[int, int, Address]]) -> bool:
    """Whether each address is written where the JSON says it is a server's (the value of "ip", a DNS answer...):
    read from the text just before it, which spares walking the document in the common case."""
    return all(_SERVER_CONTEXT.search(text, max(0, s - 40), s) for s, _, _ in spans)


def scrub_document(doc: dict[str, Any], text: bytes | None = None) -> dict[str, Any]:
    """For publishing: the document without PRIVATE_FIELDS and without any address that may be the probe's (both
    rules of the module's docstring); `doc` itself when there is nothing to remove (never modified). `text`: the
    document's JSON, if the caller has it (saves an encoding)."""
    probe = probe_address(doc)
    clean = _without_private_fields(doc)
    body = _text_of(clean, text if clean is doc else None)
    spans = _spans(body)
    if not spans or (probe is None and _all_in_server_places(body, spans)):
        return clean
    servers = server_addresses(clean)

    def private(a: Address) -> bool:
        return a == probe or (a not in servers and not _says_nothing(a))

    return _scrubbed(clean, body, spans, private)


def strip_probe_address(doc: dict[str, Any], text: bytes | None = None) -> dict[str, Any]:
    """For storing: the document without PRIVATE_FIELDS and without the probe's own address in any spelling.
    Only a document with a real `probe_ip` is scanned (ingest's cost is unchanged for every other); the rule for
    unknown addresses is applied when documents are published (scrub_document)."""
    probe = probe_address(doc)
    clean = _without_private_fields(doc)
    if probe is None:
        return clean
    body = _text_of(clean, None)
    return _scrubbed(clean, body, _spans(body), lambda a: a == probe)


def _scrubbed(doc: dict[str, Any], body: str, spans: list[tuple[int, int, Address]],
              private: Callable[[Address], bool]) -> dict[str, Any]:
    """`doc` with its private addresses replaced; only strings holding one of their spellings (as written in the
    document's JSON `body`, found by a substring search) are parsed again."""
    needles = {body[s:e] for s, e, a in spans if private(a)}
    if not needles:
        return doc

    def fix(text: str) -> str:
        return scrub_text(text, private) if any(n in text for n in needles) else text

    scrubbed: dict[str, Any] = _walk(doc, fix)  # a dict walks to a dict
    return scrubbed


def scrub_json(raw: bytes) -> bytes:
    """One published document (JSON text) scrubbed; the same bytes when there was nothing to remove."""
    doc = msgspec.json.decode(raw)
    if not isinstance(doc, dict):
        return raw
    clean = scrub_document(doc, raw)
    return raw if clean is doc else msgspec.json.encode(clean)
