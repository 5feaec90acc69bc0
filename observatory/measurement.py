"""Typed measurement records in the OONI data format (df-000-base, ts-017-web-connectivity and friends).

Two layers:
* `Measurement`: the normalised envelope every stage uses (time, country, network, region, test, input,
  platform, independent-evidence key) plus the whole document, minus the private fields we never keep.
* Structs for the raw observations of web_connectivity (`queries`, `tcp_connect`, `tls_handshakes`,
  `requests`, `control`, our `x_download`), decoded on demand by the verdict rules and produced by the
  probe and the simulator. Unknown keys are tolerated and kept in the document.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache, partial
from typing import Any

import msgspec

from observatory import scrub as _scrub
from observatory.catalog import platform_of
from observatory.errors import ParseError
from observatory.scrub import strip_probe_address

# Fields the observatory never stores (they identify the person who runs the probe), and what replaces an address
# that may be theirs: defined with the scrubbing, in observatory.scrub.
PRIVATE_FIELDS = _scrub.PRIVATE_FIELDS
SCRUBBED = _scrub.SCRUBBED
OONI_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


# --- raw observations (web_connectivity test keys) --------------------------------------------------------


class DNSAnswer(msgspec.Struct, kw_only=True, omit_defaults=True):
    answer_type: str = "A"
    ipv4: str | None = None
    ipv6: str | None = None
    hostname: str | None = None
    asn: int | None = None
    as_org_name: str | None = None
    ttl: int | None = None


class DNSQuery(msgspec.Struct, kw_only=True):
    hostname: str
    query_type: str = "A"
    engine: str = "system"
    resolver_address: str | None = ""
    failure: str | None = None
    answers: list[DNSAnswer] | None = None
    t: float | None = None
    t0: float | None = None


class TCPStatus(msgspec.Struct, kw_only=True):
    success: bool = False
    failure: str | None = None
    blocked: bool | None = None


class TCPConnect(msgspec.Struct, kw_only=True):
    ip: str
    port: int
    status: TCPStatus
    t: float | None = None
    t0: float | None = None


class TLSHandshake(msgspec.Struct, kw_only=True):
    address: str | None = None
    server_name: str | None = None
    failure: str | None = None
    negotiated_protocol: str | None = None
    tls_version: str | None = None
    cipher_suite: str | None = None
    peer_certificates: list[dict[str, Any]] | None = None
    no_tls_verify: bool = False
    t: float | None = None
    t0: float | None = None


class HTTPRequest(msgspec.Struct, kw_only=True):
    url: str = ""
    method: str = "GET"
    headers: dict[str, Any] | None = None
    body: Any = None


class HTTPResponse(msgspec.Struct, kw_only=True):
    code: int | None = None
    headers: dict[str, Any] | None = None
    body: Any = None
    body_is_truncated: bool = False


class HTTPTransaction(msgspec.Struct, kw_only=True):
    request: HTTPRequest | None = None
    response: HTTPResponse | None = None
    failure: str | None = None
    t: float | None = None
    t0: float | None = None


class ControlDNS(msgspec.Struct, kw_only=True):
    failure: str | None = None
    addrs: list[str] = msgspec.field(default_factory=list)


class ControlTCP(msgspec.Struct, kw_only=True):
    status: bool = False
    failure: str | None = None


class ControlTLS(msgspec.Struct, kw_only=True):
    server_name: str | None = None
    status: bool = False
    failure: str | None = None


class ControlHTTP(msgspec.Struct, kw_only=True):
    body_length: int | None = -1
    failure: str | None = None
    title: str | None = ""
    headers: dict[str, Any] | None = None
    status_code: int | None = -1
    discovered_h3_endpoint: str | None = None


class Control(msgspec.Struct, kw_only=True):
    tcp_connect: dict[str, ControlTCP] | None = None
    tls_handshake: dict[str, ControlTLS] | None = None
    http_request: ControlHTTP | None = None
    dns: ControlDNS | None = None
    # our extension: the helper's own bounded download, for throughput comparison
    x_download: Download | None = None


class Download(msgspec.Struct, kw_only=True):
    """Our extension (`x_download`): a bounded download of the target to measure throughput."""

    url: str = ""
    bytes: int = 0
    seconds: float = 0.0
    failure: str | None = None

    @property
    def kbps(self) -> float | None:
        if self.failure or self.seconds <= 0 or self.bytes <= 0:
            return None
        return self.bytes * 8 / 1000 / self.seconds


class WebConnectivityKeys(msgspec.Struct, kw_only=True):
    client_resolver: str | None = None
    queries: list[DNSQuery] | None = None
    tcp_connect: list[TCPConnect] | None = None
    tls_handshakes: list[TLSHandshake] | None = None
    requests: list[HTTPTransaction] | None = None
    control: Control | None = None
    control_failure: str | None = None
    dns_experiment_failure: str | None = None
    dns_consistency: str | None = None
    http_experiment_failure: str | None = None
    blocking: bool | str | None = None
    accessible: bool | None = None
    x_download: Download | None = None
    x_control_unavailable: bool | None = None


# --- the envelope -----------------------------------------------------------------------------------------


class _Envelope(msgspec.Struct, kw_only=True):
    """What ingest checks of every document, whatever its test; types as OONI published them."""

    test_name: str
    measurement_start_time: str | None = None
    test_start_time: str | None = None
    start_time: float | None = None  # legacy YAML-era reports: a UNIX timestamp
    probe_cc: str | None = None
    probe_asn: str | None = None
    probe_network_name: str | None = None
    test_version: str | None = None
    software_name: str | None = None
    software_version: str | None = None
    input: str | list[Any] | None = None
    report_id: str | None = None
    measurement_uid: str | None = None
    annotations: dict[str, Any] | None = None
    test_keys: dict[str, Any] | None = None
    test_runtime: float | None = None
    resolver_asn: str | None = None
    resolver_ip: str | None = None
    data_format_version: str | None = None


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    """One measurement: the normalised envelope every stage reads, and the stored document.

    A msgspec Struct rather than a frozen dataclass: built once per measurement ingested or uploaded, and a
    frozen dataclass's __init__ (a setattr call per field) cost ~4 us of the ~25 us a small upload takes."""

    uid: str
    start_time: datetime
    probe_cc: str
    probe_asn: int
    network_name: str
    region: str | None
    probe_key: str  # independent-evidence key: probe_id, else report_id, else network+resolver (uploads: the
    # collector replaces it with the uploading credential, `c:<probe name>`: one credential is one witness)
    resolver_asn: int | None
    test_name: str
    test_version: str
    software_name: str
    input: str | None
    platform: str | None
    doc: dict[str, Any]
    # the exact JSON text received, when it needed no scrubbing: stored as is, byte for byte
    raw_json: bytes | None = None

    def _identity(self) -> tuple[Any, ...]:
        """What equality and hashing compare: the envelope, not the document (its uid stands for it)."""
        return (self.uid, self.start_time, self.probe_cc, self.probe_asn, self.network_name, self.region,
                self.probe_key, self.resolver_asn, self.test_name, self.test_version, self.software_name,
                self.input, self.platform)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Measurement) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return (f"Measurement(uid={self.uid!r}, start_time={self.start_time.isoformat()}, probe_cc={self.probe_cc!r}, "
                f"probe_asn={self.probe_asn}, test_name={self.test_name!r}, input={self.input!r})")

    def document_json(self) -> bytes:
        return self.raw_json if self.raw_json is not None else encode_document(self.doc)

    @property
    def test_keys(self) -> dict[str, Any]:
        tk = self.doc.get("test_keys")
        return tk if isinstance(tk, dict) else {}

    def web_connectivity(self) -> WebConnectivityKeys:
        """The raw observations, typed. Raises ParseError if the test keys do not have OONI's shape."""
        try:
            return msgspec.convert(self.test_keys, WebConnectivityKeys, strict=False)
        except msgspec.ValidationError as exc:
            raise ParseError(f"web_connectivity test_keys: {exc}") from None


# --- parsing ----------------------------------------------------------------------------------------------


def parse_asn(value: str | int | None, *, where: str = "probe_asn") -> int:
    """'AS17557' -> 17557; None -> 0 (OONI's unknown network)."""
    if value is None or value == "":
        return 0
    if isinstance(value, int):
        return value
    text = value.strip().upper()
    if text.startswith("AS"):
        text = text[2:]
    if not text.isdigit():
        raise ParseError(f"{where} {value!r} is not of the form 'AS<number>'")
    if int(text) >= 2**32:
        raise ParseError(f"{where} {value!r} is beyond the 32-bit AS number space")
    return int(text)


def format_asn(asn: int) -> str:
    return f"AS{asn}"


def parse_time(value: str | float | int | None, *, where: str = "measurement_start_time") -> datetime:
    """OONI times: 'YYYY-MM-DD HH:MM:SS' (UTC), ISO 8601, or UNIX seconds in legacy reports."""
    if value is None:
        raise ParseError(f"{where} is missing")
    if isinstance(value, int | float):
        if not 0 <= value < 4_102_444_800:
            raise ParseError(f"{where} {value!r} is not a plausible UNIX time")
        return datetime.fromtimestamp(value, UTC)
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(f"{where} {value!r} is not a time like 'YYYY-MM-DD HH:MM:SS'") from None
    try:
        return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset leaves the calendar
        raise ParseError(f"{where} {value!r} is out of range") from None


# Time sanity (issue #22). OONI's first measurements date from 2012: anything older is a broken clock or a
# forgery, and a year-1 or year-9999 time would overflow the detector's window arithmetic. A probe's clock may
# run a little ahead of ours, never by more than this.
EARLIEST_TIME = datetime(2012, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(minutes=10)


def time_problem(t: datetime, now: datetime) -> str | None:
    """Why a measurement time cannot be believed, relative to the receiver's clock `now`; None when it can."""
    if t < EARLIEST_TIME:
        return f"measurement_start_time {t:%Y-%m-%d %H:%M:%S} is before {EARLIEST_TIME:%Y-%m-%d} (before OONI)"
    if t > now + MAX_CLOCK_SKEW:
        minutes = MAX_CLOCK_SKEW.total_seconds() / 60
        return (f"measurement_start_time {t:%Y-%m-%d %H:%M:%S} is more than {minutes:g} minutes ahead of the "
                f"receiving clock ({now:%Y-%m-%d %H:%M:%S} UTC)")
    return None


def sane_time(t: datetime, now: datetime) -> datetime:
    """`t` brought inside [EARLIEST_TIME, now + MAX_CLOCK_SKEW]: for reads of rows stored before the checks."""
    return min(max(t, EARLIEST_TIME), now + MAX_CLOCK_SKEW)


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime(OONI_TIME_FORMAT)


def strip_private(doc: dict[str, Any], text: bytes | None = None) -> dict[str, Any]:
    """The document without the probe's address (in any spelling: observatory.scrub) and city; `doc` itself when
    there is nothing to remove. What is published is scrubbed further (observatory.scrub.scrub_document)."""
    try:
        return strip_probe_address(doc, text)
    except RecursionError:
        raise ParseError("the document nests too deep to be read") from None


def content_uid(doc: dict[str, Any]) -> str:
    """A stable identity for documents without `measurement_uid`: a hash of their canonical content."""
    canonical = msgspec.json.encode(doc, order="sorted")
    return "h" + hashlib.sha256(canonical).hexdigest()[:32]


def _input_str(value: str | list[Any] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    return " ".join(str(v) for v in value) or None


def probe_key(doc: dict[str, Any], annotations: dict[str, Any], asn: int) -> str:
    """Who vouches for this measurement, as independently as the data allows (see docs/contracts.md)."""
    pid = annotations.get("probe_id") or doc.get("probe_id")
    if isinstance(pid, str) and pid:
        return "p:" + pid
    rid = doc.get("report_id")
    if isinstance(rid, str) and rid:
        return "r:" + rid
    return f"n:{asn}:{doc.get('resolver_ip') or doc.get('resolver_asn') or ''}"


_ENVELOPE_STR = ("measurement_start_time", "test_start_time", "probe_cc", "probe_asn", "probe_network_name",
                 "test_version", "software_name", "software_version", "report_id", "measurement_uid", "resolver_asn",
                 "resolver_ip", "data_format_version")
_ENVELOPE_NUM = ("start_time", "test_runtime")
_ENVELOPE_DICT = ("annotations", "test_keys")


def _plain_envelope(obj: dict[str, Any]) -> bool:
    """Whether the envelope has _Envelope's types, checked by hand: the common case, without msgspec.convert
    copying the document's top level (when this says no, convert decides, and words the error)."""
    if type(obj.get("test_name")) is not str:
        return False
    get = obj.get
    for k in _ENVELOPE_STR:
        v = get(k)
        if v is not None and type(v) is not str:
            return False
    for k in _ENVELOPE_NUM:
        v = get(k)
        if v is not None and type(v) is not float and type(v) is not int:
            return False
    for k in _ENVELOPE_DICT:
        v = get(k)
        if v is not None and type(v) is not dict:
            return False
    v = get("input")
    return v is None or type(v) is str or type(v) is list


# OONI's instant-messaging tests measure one platform each and have no input to name it
TEST_PLATFORMS = {"telegram": "telegram", "whatsapp": "whatsapp", "signal": "signal",
                  "facebook_messenger": "facebook"}
_platform_of = lru_cache(maxsize=1 << 16)(platform_of)  # inputs repeat: a probe measures a list of targets
_parse_asn = lru_cache(maxsize=1 << 16)(parse_asn)  # networks repeat: a few thousand carry most measurements


def measurement_from_dict(obj: Any, *, where: str = "", raw_json: bytes | None = None) -> Measurement:
    """Validates one decoded JSON value as an OONI measurement and normalises it.

    `raw_json`, the text `obj` was decoded from, is kept as the stored document when it can be (nothing private
    to remove, and on one line so that a JSON-lines export stays one document per line).
    """
    if not isinstance(obj, dict):
        raise ParseError(f"expected a JSON object, got {type(obj).__name__}", where=where)
    get: Callable[[str], Any]
    if _plain_envelope(obj):
        get = obj.get
    else:
        try:
            get = partial(getattr, msgspec.convert(obj, _Envelope, strict=True))
        except msgspec.ValidationError as exc:
            raise ParseError(str(exc).replace("`$.", "`"), where=where) from None
    test_name = get("test_name")
    if not test_name:
        raise ParseError("test_name is empty", where=where)
    probe_cc = get("probe_cc")
    try:
        start = parse_time(
            get("measurement_start_time") or get("test_start_time") or get("start_time"),
            where="measurement_start_time",
        )
        asn = _parse_asn(get("probe_asn"))
        resolver_asn_text = get("resolver_asn")
        resolver_asn = _parse_asn(resolver_asn_text, where="resolver_asn") if resolver_asn_text else None
    except ParseError as exc:
        raise ParseError(exc.reason, where=where) from None
    cc = (probe_cc or "ZZ").upper()
    if len(cc) != 2 or not cc.isalpha():
        raise ParseError(f"probe_cc {probe_cc!r} is not an ISO 3166-1 alpha-2 code", where=where)
    doc = strip_private(obj, raw_json)
    annotations = get("annotations") or {}
    region = annotations.get("region")
    inp = _input_str(get("input"))
    keep_raw = raw_json is not None and doc is obj and b"\n" not in raw_json and b"\r" not in raw_json
    return Measurement(
        uid=get("measurement_uid") or content_uid(doc),
        start_time=start,
        probe_cc=cc,
        probe_asn=asn,
        network_name=get("probe_network_name") or annotations.get("network_name") or "",
        region=region if isinstance(region, str) and region else None,
        probe_key=probe_key(doc, annotations, asn),
        resolver_asn=resolver_asn,
        test_name=test_name,
        test_version=get("test_version") or "",
        software_name=get("software_name") or "",
        input=inp,
        platform=(_platform_of(inp) if inp is not None and len(inp) < 512 else platform_of(inp))
        or TEST_PLATFORMS.get(test_name),
        doc=doc,
        raw_json=raw_json if keep_raw else None,
    )


_decoder = msgspec.json.Decoder()


def parse_measurement(data: bytes | str, *, where: str = "") -> Measurement:
    """Decodes and validates one JSON document (a line of a .jsonl file, or a whole .json file)."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ParseError(f"document of {len(data)} bytes exceeds the {MAX_DOCUMENT_BYTES} byte limit", where=where)
    try:
        obj = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}", where=where) from None
    except UnicodeDecodeError as exc:
        raise ParseError(f"invalid UTF-8: {exc}", where=where) from None
    raw = data.encode() if isinstance(data, str) else bytes(data)
    return measurement_from_dict(obj, where=where, raw_json=raw.strip())


def encode_document(doc: dict[str, Any]) -> bytes:
    return msgspec.json.encode(doc)
