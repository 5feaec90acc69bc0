"""Measurements in ClickHouse: batches in (checked against what is stored), documents, exports and
summaries out, verdicts recomputed, a credential's rows found and purged."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from observatory.encoding import csv_cell
from observatory.errors import StoreError
from observatory.measurement import sane_time
from observatory.store.base import (
    Classify,
    InsertResult,
    MeasurementFilter,
    MeasurementSummary,
    ReclassifyObserver,
    ReclassifyPass,
    Row,
    StoredVerdict,
    StoreStats,
    first_of_each_uid,
    measurement_summary,
    rows_table,
)
from observatory.store.clickhouse.core import _mapped_errors, _utc, where
from observatory.store.clickhouse.migrations import _TS
from observatory.store.clickhouse.rollup import RollupMixin
from observatory.store.schema import EXPORT_NAMES, MEASUREMENT_COLUMNS, SUMMARY_NAMES
from observatory.store.shared import check_export_format, measurement_conditions

PAGE_ROWS = 20_000  # documents() reads this many rows per query
# how an export writes these columns (others as stored): as DuckDB's, a network as "AS<n>" and no platform NULL
_EXPORTED = {"asn": "concat('AS', toString(asn)) AS asn", "platform": "if(platform = '', NULL, platform) AS platform"}


class MeasurementsMixin(RollupMixin):

    # --- measurements -----------------------------------------------------------------------------------

    def _stored_uids(self, table: pa.Table) -> set[str]:
        """Which of these rows' uids are already stored.

        A uid names one measurement, taken at one time in one country (OONI's uids and ours embed the time; the
        fallback is a hash of the content), so the lookup is bounded by the rows' countries and time span: the
        monthly partitions and the (cc, ..., t) order skip everything else, instead of reading every stored uid
        (a bloom filter cannot help an IN of thousands of values). Rows are looked up in time order, in chunks,
        so each chunk's span stays narrow.
        """
        found: set[str] = set()
        ordered = table.select(["uid", "t", "cc"]).sort_by("t")
        for i in range(0, ordered.num_rows, 10_000):
            chunk = ordered.slice(i, 10_000)
            ts = chunk.column("t").to_pylist()
            found.update(r[0] for r in self._rows(
                f"SELECT uid FROM {{db}}.measurements WHERE t >= {{lo:{_TS}}} AND t <= {{hi:{_TS}}} "
                "AND cc IN {ccs:Array(String)} AND uid IN {uids:Array(String)}",
                {"lo": ts[0].replace(tzinfo=UTC), "hi": ts[-1].replace(tzinfo=UTC),
                 "ccs": sorted(set(chunk.column("cc").to_pylist())), "uids": chunk.column("uid").to_pylist()}))
        return found

    def insert(self, rows: Sequence[Row]) -> InsertResult:
        return self.insert_table(rows_table(rows))

    def document_encoder(self, samples: Callable[[], Sequence[bytes]] | None = None) -> None:
        """None: documents arrive as JSON (BATCH_SCHEMA's `doc`) and the server compresses them (ZSTD codec)."""
        return None

    def insert_table(self, table: pa.Table) -> InsertResult:
        table, in_batch_dups = first_of_each_uid(table)
        if table.num_rows == 0:
            return InsertResult(accepted=0, duplicates=in_batch_dups)
        with self._lock:
            # Checked per batch, under the lock: a retry after a failure mid-batch stores only what is missing.
            stored = self._stored_uids(table)
            if stored:
                uids = table.column("uid").to_pylist()
                table = table.take(pa.array([i for i, u in enumerate(uids) if u not in stored], pa.int64()))
            if table.num_rows:
                self._write(table)
        return InsertResult(
            accepted=table.num_rows,
            duplicates=in_batch_dups + len(stored),
            accepted_uids=tuple(table.column("uid").to_pylist()),
        )

    def _write(self, table: pa.Table) -> None:
        self._writable()
        n = table.num_rows
        first = self._next_seq
        ts = pa.timestamp("us", tz="UTC")
        empty = pa.scalar("", pa.string())
        now = datetime.now(UTC)
        columns: dict[str, Any] = {}
        for col in MEASUREMENT_COLUMNS:  # the stored columns, in the table's order
            if col.name == "seq":
                columns[col.name] = pa.array(range(first, first + n), pa.uint64())
            elif col.name == "received":
                columns[col.name] = pa.array([now] * n, ts)
            elif col.name == "raw":  # the document as received: the server compresses it (ZSTD codec)
                columns[col.name] = table.column("doc").cast(pa.string())
            elif col.name not in table.column_names:  # an optional column the batch does not carry
                columns[col.name] = pa.nulls(n, col.batch or pa.string())
            elif col.batch is not None and pa.types.is_timestamp(col.batch):
                columns[col.name] = table.column(col.name).cast(ts)
            elif col.fill_empty:
                columns[col.name] = pc.fill_null(table.column(col.name), empty)
            else:
                columns[col.name] = table.column(col.name)
        out = pa.table(columns)
        # Claimed before the insert: if the server completes it but the reply is lost, the retry must not reuse
        # these numbers (a gap in seq is harmless; a repeat would hide rows from changes_since).
        self._next_seq = first + n
        with _mapped_errors(self._display_url()):
            self._client.insert_arrow("measurements", out, database=self._database)

    def count(self) -> int:
        return int(self._scalar("SELECT count() FROM {db}.measurements") or 0)

    def stats(self) -> StoreStats:
        def grouped(expr: str, limit: int = 200) -> dict[str, int]:
            q = (f"SELECT {expr} AS k, count() AS n FROM {{db}}.measurements GROUP BY k "
                 f"ORDER BY n DESC, k LIMIT {limit}")
            return {str(k): int(n) for k, n in self._rows(q)}

        return {
            "measurements": self.count(),
            "by_country": grouped("cc"),
            "by_network": grouped("concat('AS', toString(asn))"),
            "by_test": grouped("test_name"),
            "by_platform": grouped("if(platform = '', '(none)', platform)"),
            "by_verdict": grouped("verdict"),
            "by_day": dict(sorted(grouped("formatDateTime(t, '%Y-%m-%d')", 10_000).items())),
            # who brought them (issue #22): a probe's credential or an import source, to find a forger
            "by_credential": grouped("ifNull(credential, '(unrecorded)')"),
        }

    @staticmethod
    def _where(flt: MeasurementFilter) -> tuple[str, dict[str, Any]]:
        return where(measurement_conditions(flt))

    def documents(self, flt: MeasurementFilter) -> Iterator[bytes]:
        """The stored documents in (t, uid) order, a page at a time (no stream held open between pages, so the
        caller may use the store while iterating)."""
        where, params = self._where(flt)
        last: tuple[datetime, str] | None = None
        while True:
            page_clause = ""
            page_params = dict(params)
            if last is not None:
                page_clause = f" AND (t, uid) > ({{last_t:{_TS}}}, {{last_uid:String}})"
                page_params.update(last_t=last[0], last_uid=last[1])
            rows = self._rows(
                f"SELECT raw, t, uid FROM {{db}}.measurements WHERE {where}{page_clause} "
                f"ORDER BY t, uid LIMIT {PAGE_ROWS}", page_params)
            for raw, _, _ in rows:
                yield raw.encode() if isinstance(raw, str) else bytes(raw)
            if len(rows) < PAGE_ROWS:
                return
            last = (_utc(rows[-1][1]), rows[-1][2])

    def export(self, flt: MeasurementFilter, fmt: str, path: str) -> int:
        """Parquet (with each whole document as JSON text, `document`) or CSV (the summary columns): the same
        columns and types as DuckDBStore's (its CSV byte for byte), streamed a block at a time."""
        check_export_format(fmt)
        where, params = self._where(flt)
        cols = ", ".join(_EXPORTED.get(name, name) for name in EXPORT_NAMES)
        if fmt == "parquet":
            cols += ", raw AS document"
        q = f"SELECT {cols} FROM {{db}}.measurements WHERE {where} ORDER BY t, uid"
        n = 0
        writer: Any = None
        try:
            with self._lock, _mapped_errors(self._display_url()), self._client.query_arrow_stream(
                    self._sql(q), parameters=params, use_strings=True) as stream:
                for batch in stream:
                    table = _plain_arrow(pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch)
                                         else batch)
                    if writer is None:
                        writer = (pq.ParquetWriter(path, table.schema, compression="zstd") if fmt == "parquet"
                                  else _CsvWriter(path, table.column_names))
                    writer.write_table(table)
                    n += table.num_rows
        except OSError as exc:
            raise StoreError(f"export to {path}: {exc.strerror or exc}") from exc
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            Path(path).write_bytes(b"")
        return n

    def measurements(self, flt: MeasurementFilter, *, limit: int, offset: int) -> list[MeasurementSummary]:
        where, params = self._where(flt)
        q = (f"SELECT {', '.join(SUMMARY_NAMES)} FROM {{db}}.measurements WHERE {where} ORDER BY t, uid "
             "LIMIT {limit:UInt64} OFFSET {offset:UInt64}")
        rows = self._rows(q, {**params, "limit": max(0, limit), "offset": max(0, offset)})
        return [measurement_summary(r) for r in rows]

    def reclassify(self, classify: Classify, *, batch_size: int = 10_000,
                   observe: ReclassifyObserver | None = None) -> int:
        """Recomputes every stored verdict (and its rule and rules version) from the raw documents; the changes
        land in one mutation, and the new rules version alone in another. The number of verdicts or kbps
        that changed."""
        judged = ReclassifyPass(classify, observe)
        before = int(self._scalar("SELECT max(seq) FROM {db}.measurements") or 0)  # rows stored before the pass
        updates: list[tuple[str, StoredVerdict]] = []
        last = ""
        while True:
            chunk = self._rows(
                "SELECT uid, raw, verdict, kbps, verdict_rule, rules_version FROM {db}.measurements "
                "WHERE uid > {last:String} ORDER BY uid LIMIT {n:UInt64}", {"last": last, "n": batch_size})
            if not chunk:
                break
            last = chunk[-1][0]
            for uid, raw, *stored in chunk:
                new = judged.judge(uid, stored, raw.encode() if isinstance(raw, str) else bytes(raw))
                if new is not None:
                    updates.append((uid, new))
        if updates:
            self._apply_updates(updates)
        if judged.restamps:
            version = judged.stamp_version
            differs = ("rules_version IS NOT NULL" if version is None
                       else "(rules_version IS NULL OR rules_version != {v:String})")
            self._command(f"ALTER TABLE {{db}}.measurements UPDATE rules_version = {{v:Nullable(String)}} "
                          f"WHERE seq <= {{before:UInt64}} AND {differs}", {"v": version, "before": before},
                          settings={"mutations_sync": 2})
        if judged.changed:
            self._rebuild_rollup()
        return judged.changed

    def verdicts(self, uids: Sequence[str]) -> dict[str, StoredVerdict]:
        """The stored judgment of each of these uids that is stored."""
        if not uids:
            return {}
        rows = self._rows("SELECT uid, verdict, kbps, verdict_rule, rules_version FROM {db}.measurements "
                          "WHERE uid IN {uids:Array(String)}", {"uids": list(uids)})
        return {r[0]: StoredVerdict(*r[1:]) for r in rows}

    def _apply_updates(self, updates: list[tuple[str, StoredVerdict]]) -> None:
        # A Join table keyed by uid feeds one ALTER ... UPDATE (a mutation, waited for), the documented way to
        # set per-row values in ClickHouse.
        name = f"_reclassify_{time.time_ns()}"
        self._command(f"CREATE TABLE {{db}}.{name} (uid String, verdict String, kbps Nullable(Float64), "
                      "verdict_rule Nullable(String), rules_version Nullable(String)) ENGINE = Join(ANY, LEFT, uid)")
        try:
            self._insert(name, [[uid, *new] for uid, new in updates],
                         ("uid", "verdict", "kbps", "verdict_rule", "rules_version"))
            ref = f"'{self._database}.{name}'"
            self._command(
                f"ALTER TABLE {{db}}.measurements UPDATE verdict = joinGet({ref}, 'verdict', uid), "
                f"kbps = joinGet({ref}, 'kbps', uid), verdict_rule = joinGet({ref}, 'verdict_rule', uid), "
                f"rules_version = joinGet({ref}, 'rules_version', uid) "
                f"WHERE joinGetOrNull({ref}, 'verdict', uid) IS NOT NULL",
                settings={"mutations_sync": 2})
        finally:
            self._command(f"DROP TABLE IF EXISTS {{db}}.{name}")

    def example_uids(
        self, *, country: str | None, since: datetime, until: datetime, asns: Sequence[int] = (),
        platforms: Sequence[str] = (), verdicts: Sequence[str] = (), limit: int = 5,
    ) -> list[str]:
        """A few measurement ids that show an incident (its evidence), earliest first."""
        clauses = [f"t >= {{since:{_TS}}}", f"t < {{until:{_TS}}}"]
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until), "limit": max(0, limit)}
        for column, kind, values in (("asn", "Int64", list(asns)), ("platform", "String", list(platforms)),
                                     ("verdict", "String", list(verdicts))):
            if values:
                clauses.append(f"{column} IN {{{column}s:Array({kind})}}")
                params[f"{column}s"] = values
        if country:
            clauses.append("cc = {cc:String}")
            params["cc"] = country.upper()
        return [r[0] for r in self._rows(
            f"SELECT uid FROM {{db}}.measurements WHERE {' AND '.join(clauses)} ORDER BY t, uid "
            "LIMIT {limit:UInt64}", params)]

    def uid_credentials(self, uids: Sequence[str]) -> dict[str, str | None]:
        """The credential that brought each of these uids, for those stored (None: stored before issue #22)."""
        if not uids:
            return {}
        rows = self._rows("SELECT uid, any(credential) FROM {db}.measurements WHERE uid IN {uids:Array(String)} "
                          "GROUP BY uid", {"uids": list(uids)})
        return {r[0]: r[1] for r in rows}

    def purge_credential(self, credential: str) -> dict[str, tuple[datetime, datetime]]:
        """Deletes every measurement `credential` brought (a mutation, waited for); the countries and time
        spans it covered. The rollup is rebuilt (it only ever adds)."""
        with self._lock:
            rows = self._rows("SELECT cc, min(t), max(t) FROM {db}.measurements WHERE credential = {c:String} "
                              "GROUP BY cc", {"c": credential})
            if rows:
                self._command("ALTER TABLE {db}.measurements DELETE WHERE credential = {c:String}",
                              {"c": credential}, settings={"mutations_sync": 2})
                self._rebuild_rollup()
            if credential.startswith("probe:"):  # its heartbeats feed detection too
                self._command("ALTER TABLE {db}.probe_heartbeats DELETE WHERE probe = {p:String}",
                              {"p": credential[len("probe:"):]}, settings={"mutations_sync": 2})
        now = datetime.now(UTC)
        return {cc: (sane_time(_utc(lo), now), sane_time(_utc(hi), now)) for cc, lo, hi in rows}


def _plain_arrow(table: pa.Table) -> pa.Table:
    """ClickHouse's Arrow output with dictionary (LowCardinality) columns decoded to plain ones, so parquet and
    CSV readers see the same types as DuckDB's export."""
    cols = []
    for col in table.columns:
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = col.cast(pa.timestamp(col.type.unit))  # naive UTC, as DuckDB writes TIMESTAMP
        cols.append(col)
    return pa.table(cols, names=table.column_names)


class _CsvWriter:
    """CSV in the shape of DuckDB's COPY (FORMAT CSV, HEADER): times as `YYYY-MM-DD HH:MM:SS`, an empty cell for
    NULL and `""` for an empty string, quotes only where needed."""

    def __init__(self, path: str, names: Sequence[str]) -> None:
        self._fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._fh.write(",".join(names) + "\n")

    def write_table(self, table: pa.Table) -> None:
        cols = [c.to_pylist() for c in table.columns]
        self._fh.writelines(",".join(_csv_cell(v) for v in row) + "\n" for row in zip(*cols, strict=True))

    def close(self) -> None:
        self._fh.close()


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S") + (f".{v.microsecond:06d}" if v.microsecond else "")
    text = csv_cell(v) if isinstance(v, str) else str(v)  # formula-like text neutralised, as DuckDB's export
    if text == "" or any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text
