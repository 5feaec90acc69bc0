"""The Store interface: everything the observatory keeps, behind one protocol.

Every backend (DuckDB, the embedded default; ClickHouse for scale-out) implements it; callers never see SQL.
The same contract test suite runs against each backend.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol, TypedDict

import pyarrow as pa

from observatory.incident import Incident
from observatory.measurement import Measurement
from observatory.series import SeriesCell
from observatory.signals import SignalPoint, SignalSeries

# re-exported (callers import them from here); their home is store/provenance.py and store/schema.py
from observatory.store.provenance import Classify as Classify
from observatory.store.provenance import ReclassifyObserver as ReclassifyObserver
from observatory.store.provenance import ReclassifyPass as ReclassifyPass
from observatory.store.provenance import StoredVerdict as StoredVerdict
from observatory.store.provenance import reclassified as reclassified
from observatory.store.schema import BATCH_SCHEMA as BATCH_SCHEMA
from observatory.store.schema import ENCODED_BATCH_SCHEMA as ENCODED_BATCH_SCHEMA


@dataclass(frozen=True, slots=True)
class Row:
    """A measurement as stored: the record, its verdict and its throughput (None when not measured)."""

    measurement: Measurement
    verdict: str
    kbps: float | None = None
    source: str = ""  # "ooni" for OONI's public data, "observatory" for our probes, "" unknown
    # verdict provenance: the id of the rule that decided and the rules version (verdict.RULES_VERSION); None
    # when unknown (rows stored before provenance was kept, a classification that failed)
    rule: str | None = None
    rules_version: str | None = None


# list of JSON documents -> the store's encoding of each; picklable, and safe to call in a forked process
DocumentEncoder = Callable[[list[bytes]], list[bytes]]
_PLAIN_FIELDS = list(BATCH_SCHEMA)[:-1]  # every field but the document, the last


class BatchBuilder:
    """Measurements gathered column by column into a BATCH_SCHEMA table: no row objects kept alive, and the
    table is handed to the store (or across a process boundary) whole."""

    __slots__ = ("_cols", "_appends")

    def __init__(self) -> None:
        self._cols: list[list[Any]] = []
        self._appends: list[Any] = []
        self._reset()

    def _reset(self) -> None:
        self._cols = [[] for _ in BATCH_SCHEMA]
        self._appends = [c.append for c in self._cols]

    def __len__(self) -> int:
        return len(self._cols[0])

    def add(self, m: Measurement, verdict: str, kbps: float | None, source: str, rule: str | None = None,
            rules_version: str | None = None) -> None:
        t = m.start_time
        if t.tzinfo is UTC:
            t = t.replace(tzinfo=None)
        elif t.tzinfo is not None:
            t = t.astimezone(UTC).replace(tzinfo=None)
        (uid, tt, cc, asn, network, region, probe_key, resolver_asn, test_name, test_version, software, src, inp,
         platform, verd, kb, verdict_rule, version, doc) = self._appends
        uid(m.uid)
        tt(t)
        cc(m.probe_cc)
        asn(m.probe_asn)
        network(m.network_name)
        region(m.region)
        probe_key(m.probe_key)
        resolver_asn(m.resolver_asn)
        test_name(m.test_name)
        test_version(m.test_version)
        software(m.software_name)
        src(source)
        inp(m.input)
        platform(m.platform)
        verd(verdict)
        kb(kbps)
        verdict_rule(rule)
        version(rules_version)
        doc(m.document_json())

    def add_row(self, row: Row) -> None:
        self.add(row.measurement, row.verdict, row.kbps, row.source, row.rule, row.rules_version)

    def take(self, encoder: DocumentEncoder | None = None) -> pa.Table:
        """The table of everything added so far; the builder starts again empty. With a store's `encoder`,
        the documents come out already encoded (ENCODED_BATCH_SCHEMA)."""
        cols = self._cols
        arrays = [pa.array(c, f.type) for c, f in zip(cols[:-1], _PLAIN_FIELDS, strict=True)]
        docs = cols[-1] if encoder is None else encoder(cols[-1])
        arrays.append(pa.array(docs, pa.binary()))
        table = pa.Table.from_arrays(arrays, schema=BATCH_SCHEMA if encoder is None else ENCODED_BATCH_SCHEMA)
        self._reset()
        return table


def rows_table(rows: Sequence[Row]) -> pa.Table:
    b = BatchBuilder()
    for r in rows:
        b.add_row(r)
    return b.take()


def credential_of(probe_name: str) -> str:
    """The provenance recorded for an upload by the named probe (imports record `file:<name>`, `ooni-s3`...)."""
    return "probe:" + probe_name


def with_credential(table: pa.Table, credential: str | Sequence[str]) -> pa.Table:
    """The table with its optional `credential` column: who (a probe's credential, an import source) brought
    each row. Stores keep it; tables without it are stored with no credential (as before issue #22)."""
    values = [credential] * table.num_rows if isinstance(credential, str) else list(credential)
    column = pa.array(values, pa.string())
    if "credential" in table.column_names:
        return table.set_column(table.column_names.index("credential"), "credential", column)
    return table.append_column("credential", column)


def own_uid(uid: str, credential: str) -> str:
    """The uid a measurement is stored under when another credential stored its uid first (issue #22): stable
    (a retry or a re-import finds it again), and naming no probe."""
    return f"{uid}-{hashlib.sha256(credential.encode()).hexdigest()[:12]}"


def insert_beside_uploads(store: Store, table: pa.Table) -> InsertResult:
    """store.insert_table(table), and the imported rows whose uid an upload (a probe's credential) stored first
    stored beside it under their own uid: a probe that sends an OONI uid before OONI's copy is imported cannot
    make the import drop it. Costs a lookup only when a batch had duplicates."""
    result = store.insert_table(table)
    if not result.duplicates or "credential" not in table.column_names:
        return result
    uids, creds = values_of(table.column("uid")), values_of(table.column("credential"))
    fresh = set(result.accepted_uids)
    missed = sorted({u for u, c in zip(uids, creds, strict=True)
                     if u not in fresh and c is not None and not c.startswith("probe:")})
    if not missed:
        return result
    squatted = {u for u, held in store.uid_credentials(missed).items() if held and held.startswith("probe:")}
    rows = [i for i, u in enumerate(uids) if u in squatted and creds[i] and not creds[i].startswith("probe:")]
    if not rows:
        return result
    again = table.take(pa.array(rows, pa.int64()))
    again = again.set_column(again.column_names.index("uid"), "uid",
                             pa.array([own_uid(uids[i], creds[i]) for i in rows], pa.string()))
    more = store.insert_table(again)
    return InsertResult(accepted=result.accepted + more.accepted, duplicates=result.duplicates - more.accepted,
                        accepted_uids=result.accepted_uids + more.accepted_uids)


def values_of(column: pa.ChunkedArray) -> list[Any]:
    """A string or binary column as a list of str or bytes (None for null), through numpy: to_pylist() builds a
    pyarrow scalar per value first."""
    values: list[Any] = column.to_numpy().tolist()
    return values


def first_of_each_uid(table: pa.Table) -> tuple[pa.Table, int]:
    """The table with only the first row of each uid (a batch may repeat a measurement), and how many went."""
    uids = values_of(table.column("uid"))
    seen = dict.fromkeys(uids)
    if len(seen) == len(uids):
        return table, 0
    keep: list[int] = []
    first: set[str] = set()
    for i, u in enumerate(uids):
        if u not in first:
            first.add(u)
            keep.append(i)
    return table.take(pa.array(keep, pa.int64())), len(uids) - len(keep)


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """How a store is opened: given by the entry point (`store.store_settings(cli.app.current_settings())`),
    never read from the environment by the store itself."""

    wait_seconds: float = 30.0  # how long to wait for a DuckDB file another process holds
    # DuckDB's buffer pool: bounded (its default is 80% of the machine, which a long ingest would take)
    duckdb_memory: str = "4GB"


@dataclass(frozen=True, slots=True)
class InsertResult:
    accepted: int
    duplicates: int
    accepted_uids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasurementFilter:
    country: str | None = None
    asn: int | None = None
    platform: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    uids: tuple[str, ...] | None = None
    # any of these (an incident's platforms and networks); None means no restriction
    platforms: tuple[str, ...] | None = None
    asns: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class IncidentFilter:
    country: str | None = None
    platform: str | None = None
    kind: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ContextEvent:
    id: str
    country: str
    time: datetime
    title: str
    url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserReport:
    """Someone's report that a platform does not work for them: where, on which network, in their words."""

    time: datetime
    country: str
    region: str
    network: str
    platform: str
    text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeCredential:
    name: str
    token_hash: str
    secret: str
    created: datetime
    revoked: bool = False
    # where the probe is allowed to measure from (issue #22): uploads claiming another country or network are
    # refused. None / () for a probe registered before these existed: any place, still one witness.
    country: str | None = None
    asns: tuple[int, ...] = ()
    # a relay vouches for many probes (a simulation replay, a partner's collector): its measurements are
    # counted by the probe identity they carry, like a public import, and it has no per-probe quota. Admin's call.
    relay: bool = False

    @property
    def credential(self) -> str:
        """What stored measurements record as the credential that brought them."""
        return credential_of(self.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class FailingProbe:
    """One probe's bucket in which its control measurement failed: what it measured and how much failed, per
    target. The screen tells a probe that lost everything (a connectivity witness) from a stray failure."""

    bucket: datetime
    country: str
    asn: int
    region: str  # "" when unknown
    probe: str
    platform: str
    total: int
    anomalous: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TechniqueProbes:
    """How many distinct probes saw one technique on one target in a bucket of one network."""

    bucket: datetime
    country: str
    asn: int
    platform: str
    technique: str
    probes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Changes:
    """What arrived after a sequence number: per country, the span of measurement times touched."""

    max_seq: int
    spans: dict[str, tuple[datetime, datetime]]


# --- typed records out: tuples and dicts where callers (and the JSON they serve) used them before --------------

class Heartbeat(NamedTuple):
    """A probe's sign of life seen by the collector (no address, only where it says it measures from)."""

    probe: str
    time: datetime
    country: str
    asn: int
    region: str | None


class DownCount(NamedTuple):
    """Probes of one series in one bucket, and how many of them saw the target down."""

    bucket: datetime
    country: str
    asn: int
    platform: str
    probes: int
    down_probes: int


class UserReportCount(NamedTuple):
    country: str
    region: str
    platform: str
    reports: int


class MeasurementSummary(TypedDict):
    """One measurement as `measurements()` lists it (schema.SUMMARY_NAMES): the API's rows, as JSON."""

    uid: str
    t: str  # ISO 8601, UTC, to the second
    cc: str
    asn: str  # "AS<n>"
    network: str | None
    region: str | None
    test_name: str
    input: str | None
    platform: str | None
    verdict: str
    kbps: float | None
    source: str | None


class StoreStats(TypedDict):
    """What `stats()` counts: measurements overall, then per value of each dimension (most first)."""

    measurements: int
    by_country: dict[str, int]
    by_network: dict[str, int]
    by_test: dict[str, int]
    by_platform: dict[str, int]
    by_verdict: dict[str, int]
    by_day: dict[str, int]
    by_credential: dict[str, int]


def measurement_summary(row: Sequence[Any]) -> MeasurementSummary:
    """A row selected as schema.SUMMARY_NAMES -> its summary: the time in UTC to the second, the network as
    "AS<n>", no platform as None (ClickHouse keeps it as '')."""
    uid, t, cc, asn, network, region, test_name, inp, platform, verdict, kbps, source = row
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return MeasurementSummary(uid=uid, t=t.strftime("%Y-%m-%dT%H:%M:%SZ"), cc=cc, asn=f"AS{asn}", network=network,
                              region=region, test_name=test_name, input=inp, platform=platform or None,
                              verdict=verdict, kbps=kbps, source=source)


EXPORT_FORMATS = ("parquet", "csv")  # jsonl comes from documents()


# --- the store, by resource ---------------------------------------------------------------------------------

class MeasurementStore(Protocol):
    """Measurements in (idempotent on uid) and out: documents, exports, summaries; verdicts recomputed."""

    def insert(self, rows: Sequence[Row]) -> InsertResult: ...
    def insert_table(self, table: pa.Table) -> InsertResult: ...  # BATCH_SCHEMA columns, idempotent on uid
    # what may encode a table's documents before insert_table (ENCODED_BATCH_SCHEMA); None: send them as JSON.
    # `samples`: gives documents about to be stored, called only by a store that would learn its encoding (a
    # dictionary) from them first
    def document_encoder(self, samples: Callable[[], Sequence[bytes]] | None = None) -> DocumentEncoder | None: ...
    def count(self) -> int: ...
    def stats(self) -> StoreStats: ...
    def documents(self, flt: MeasurementFilter) -> Iterator[bytes]: ...
    def export(self, flt: MeasurementFilter, fmt: str, path: str) -> int: ...
    def measurements(self, flt: MeasurementFilter, *, limit: int, offset: int) -> list[MeasurementSummary]: ...
    # classify: a stored document -> StoredVerdict or (verdict, kbps); rewrites the rows whose judgment changed
    # (provenance included), calls `observe` for every row; returns how many verdicts or kbps changed
    def reclassify(self, classify: Classify, *, batch_size: int = 10_000,
                   observe: ReclassifyObserver | None = None) -> int: ...
    def verdicts(self, uids: Sequence[str]) -> dict[str, StoredVerdict]: ...  # the stored judgment of these uids
    def example_uids(
        self, *, country: str | None, since: datetime, until: datetime, asns: Sequence[int] = (),
        platforms: Sequence[str] = (), verdicts: Sequence[str] = (), limit: int = 5,
    ) -> list[str]: ...
    # what one credential sent (issue #22): which stored uids it holds, and removing all of it (the countries
    # and time spans removed, for detection to look at again)
    def uid_credentials(self, uids: Sequence[str]) -> dict[str, str | None]: ...
    def purge_credential(self, credential: str) -> dict[str, tuple[datetime, datetime]]: ...


class SeriesStore(Protocol):
    """Series aggregated in the database for detection, incremental detection's cue, and the dashboard's
    pre-aggregated rollup (additive counts per 5-minute bucket x country x network x platform)."""

    def series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]: ...
    def network_series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]: ...
    def failing_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[FailingProbe]: ...
    def technique_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[TechniqueProbes]: ...
    def down_counts(
        self, *, since: datetime, until: datetime, bucket_seconds: int, series: Sequence[tuple[str, int, str]]
    ) -> list[DownCount]: ...
    def changes_since(self, seq: int) -> Changes: ...
    def countries(self) -> list[str]: ...
    def refresh_rollup(self) -> int: ...
    def rollup(
        self, *, since: datetime, until: datetime, bucket_seconds: int, country: str | None = None,
        asn: int | None = None, platform: str | None = None,
    ) -> list[SeriesCell]: ...
    def latest_time(self) -> datetime | None: ...


class SignalStore(Protocol):
    """Outside-in signals (imported series, the outside-in prober), probe heartbeats seen by the collector, and
    people's own reports."""

    def insert_signals(self, points: Sequence[SignalPoint]) -> InsertResult: ...
    def signal_points(self, *, since: datetime, until: datetime,
                      countries: Sequence[str] | None = None) -> list[SignalPoint]: ...
    def record_heartbeat(self, *, probe: str, time: datetime, country: str, asn: int, region: str | None) -> None: ...
    def signals_version(self) -> str: ...
    def heartbeats(self, *, since: datetime, until: datetime) -> list[Heartbeat]: ...
    def signal_series(self) -> list[SignalSeries]: ...
    def add_user_report(self, report: UserReport) -> None: ...
    def user_report_counts(self, *, country: str | None, since: datetime, until: datetime
                           ) -> list[UserReportCount]: ...


class IncidentStore(Protocol):
    def save_incidents(self, incidents: Sequence[Incident]) -> None: ...
    def delete_incidents(self, ids: Sequence[str]) -> int: ...
    def incidents(self, flt: IncidentFilter) -> list[Incident]: ...
    def incident(self, incident_id: str) -> Incident | None: ...


class EventStore(Protocol):
    """Context: what happened around an incident (a rally, an exam, an election)."""

    def add_event(self, event: ContextEvent) -> None: ...
    def events(self, *, country: str | None = None, since: datetime | None = None,
               until: datetime | None = None) -> list[ContextEvent]: ...


class ProbeStore(Protocol):
    """The credentials of our probes."""

    def add_probe(self, cred: ProbeCredential) -> None: ...
    def probe_by_token_hash(self, token_hash: str) -> ProbeCredential | None: ...
    def probes(self) -> list[ProbeCredential]: ...
    def revoke_probe(self, name: str) -> bool: ...


class StateStore(Protocol):
    """Small named values (watermarks, the rollup's progress)."""

    def get_state(self, key: str) -> str | None: ...
    def set_state(self, key: str, value: str) -> None: ...


class Store(MeasurementStore, SeriesStore, SignalStore, IncidentStore, EventStore, ProbeStore, StateStore,
            Protocol):
    """Everything the observatory keeps. A caller that needs one resource may ask for its protocol alone."""

    url: str

    def close(self) -> None: ...
