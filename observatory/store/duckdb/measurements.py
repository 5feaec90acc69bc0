"""Measurements in DuckDB: batches in (one transaction each, idempotent on uid), documents, exports and
summaries out, verdicts recomputed, a credential's rows found and purged."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from observatory.measurement import sane_time
from observatory.store.base import (
    Classify,
    DocumentEncoder,
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
    values_of,
)
from observatory.store.duckdb.core import _first, _naive, _sql_literal, transaction, where
from observatory.store.duckdb.migrations import PROVENANCE_VERSION
from observatory.store.duckdb.rollup import RollupMixin
from observatory.store.schema import CSV_TEXT_NAMES, EXPORT_NAMES, OPTIONAL_NAMES, STORED_NAMES, SUMMARY_NAMES
from observatory.store.shared import check_export_format, measurement_conditions

# the stored columns, and what the INSERT selects for each from the registered batch (seq from the sequence)
_COLUMNS = STORED_NAMES
_FROM_BATCH = ", ".join("nextval('measurement_seq')" if name == "seq" else name for name in STORED_NAMES)


class MeasurementsMixin(RollupMixin):

    # --- measurements -----------------------------------------------------------------------------------

    def insert(self, rows: Sequence[Row]) -> InsertResult:
        return self.insert_table(rows_table(rows))

    def document_encoder(self, samples: Callable[[], Sequence[bytes]] | None = None) -> DocumentEncoder | None:
        """zstd with the store's current dictionary, for documents compressed in another process (ingest's pool
        workers). A store without one trains it from `samples()` (documents as they will be stored) when they
        are enough, else from its first big batch (sent as JSON): until then, None."""
        if samples is not None and not self._codec.has_dictionary:
            self._ensure_dictionary(samples())
        return self._codec.encoder()

    def insert_table(self, table: pa.Table) -> InsertResult:
        """Stores a BATCH_SCHEMA table (or ENCODED_BATCH_SCHEMA: `raw` from document_encoder()) in one
        transaction; rows whose uid is stored already are duplicates."""
        table, in_batch_dups = first_of_each_uid(table)
        if table.num_rows == 0:
            return InsertResult(accepted=0, duplicates=in_batch_dups)
        now = datetime.now(UTC).replace(tzinfo=None)
        if "raw" not in table.column_names:
            raw = pa.array(self._compress_docs(values_of(table.column("doc"))), pa.binary())
            table = table.drop_columns(["doc"]).append_column("raw", raw)
        table = table.append_column("received", pa.array([now] * table.num_rows, pa.timestamp("us")))
        for name in OPTIONAL_NAMES:  # stored as NULL when the batch does not carry them
            if name not in table.column_names:
                table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
        with self._lock, self._errors():
            con = self._con
            con.register("_batch", table)
            try:
                # A plain INSERT first: the primary key still refuses a stored uid (the whole transaction then
                # rolls back), and it is ~20x cheaper on a big table than INSERT OR IGNORE, whose conflict
                # handling costs ~100 us a row at 10 M rows (DuckDB 2.0); when it succeeds every row was
                # written, so it returns nothing. A batch holding stored uids (a retry, a re-ingest) is then
                # written again with OR IGNORE: retries and re-ingests stay idempotent.
                try:
                    self._insert_batch("INSERT")
                    accepted = values_of(table.column("uid"))
                except duckdb.ConstraintException:
                    accepted = self._insert_batch("INSERT OR IGNORE", returning=True)
            finally:
                con.unregister("_batch")
        return InsertResult(
            accepted=len(accepted),
            duplicates=in_batch_dups + table.num_rows - len(accepted),
            accepted_uids=tuple(accepted),
        )

    def _insert_batch(self, verb: str, *, returning: bool = False) -> list[str]:
        """The registered `_batch` in one transaction (rolled back on any error); the uids written, if asked."""
        con = self._con
        with transaction(con):
            cur = con.execute(
                f"""{verb} INTO measurements ({", ".join(_COLUMNS)})
                    SELECT {_FROM_BATCH} FROM _batch
                    {"RETURNING uid" if returning else ""}"""
            )
            accepted = [r[0] for r in cur.fetchall()] if returning else []
        return accepted

    def count(self) -> int:
        with self._lock, self._errors():
            row = _first(self._con.execute("SELECT count(*) FROM measurements").fetchall())
            return int(row[0]) if row else 0

    def stats(self) -> StoreStats:
        def grouped(expr: str, limit: int = 200) -> dict[str, int]:
            q = f"SELECT {expr} AS k, count(*) FROM measurements GROUP BY k ORDER BY count(*) DESC, k LIMIT {limit}"
            return {str(k): int(n) for k, n in self._con.execute(q).fetchall()}

        with self._lock, self._errors():
            return {
                "measurements": self.count(),
                "by_country": grouped("cc"),
                "by_network": grouped("'AS' || asn::VARCHAR"),
                "by_test": grouped("test_name"),
                "by_platform": grouped("coalesce(platform, '(none)')"),
                "by_verdict": grouped("verdict"),
                "by_day": dict(sorted(grouped("strftime(t, '%Y-%m-%d')", 10_000).items())),
                # who brought them (issue #22): a probe's credential or an import source, to find a forger
                "by_credential": grouped("coalesce(credential, '(unrecorded)')") if self._has_witness_columns()
                else {},
            }

    @staticmethod
    def _where(flt: MeasurementFilter) -> tuple[str, list[Any]]:
        return where(measurement_conditions(flt))

    def documents(self, flt: MeasurementFilter) -> Iterator[bytes]:
        where, params = self._where(flt)
        with self._lock.pinned():  # a shared store keeps the file while the cursor streams
            with self._lock, self._errors():
                cur = self._con.cursor()
            cur.execute(f"SELECT raw FROM measurements{where} ORDER BY t, uid", params)
            while True:
                chunk = cur.fetchmany(5000)
                if not chunk:
                    break
                for (raw,) in chunk:
                    yield self._codec.decompress(raw)
            cur.close()

    def export(self, flt: MeasurementFilter, fmt: str, path: str) -> int:
        """Parquet (with each whole document as JSON text, streamed) or CSV (the summary columns)."""
        check_export_format(fmt)
        where, params = self._where(flt)
        cols = ", ".join("'AS' || asn::VARCHAR AS asn" if name == "asn" else name for name in EXPORT_NAMES)
        query = f"SELECT {cols}{', raw' if fmt == 'parquet' else ''} FROM measurements{where} ORDER BY t, uid"
        if fmt == "csv":
            query = f"SELECT {_csv_safe_columns(cols)} FROM measurements{where} ORDER BY t, uid"
            with self._lock, self._errors():
                row = _first(self._con.execute(f"SELECT count(*) FROM measurements{where}", params).fetchall())
                self._con.execute(f"COPY ({query}) TO '{_sql_literal(path)}' (FORMAT CSV, HEADER)", params)
            return int(row[0]) if row else 0
        with self._lock.pinned():  # a shared store keeps the file while the cursor streams
            return self._export_parquet(query, params, path)

    def _export_parquet(self, query: str, params: list[Any], path: str) -> int:
        import pyarrow.parquet as pq

        with self._lock, self._errors():
            cur = self._con.cursor()
        n = 0
        writer: Any = None
        try:
            for batch in cur.sql(query, params=params).to_arrow_reader(10_000):
                raw = batch.column("raw").to_pylist()
                docs = pa.array([self._codec.decompress(r).decode() for r in raw], pa.string())
                batch = batch.drop_columns(["raw"]).append_column("document", docs)
                if writer is None:
                    writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
                writer.write_batch(batch)
                n += batch.num_rows
        finally:
            cur.close()
            if writer is not None:
                writer.close()
        if writer is None:
            Path(path).write_bytes(b"")
        return n

    def measurements(self, flt: MeasurementFilter, *, limit: int, offset: int) -> list[MeasurementSummary]:
        where, params = self._where(flt)
        q = f"SELECT {', '.join(SUMMARY_NAMES)} FROM measurements{where} ORDER BY t, uid LIMIT ? OFFSET ?"
        with self._lock, self._errors():
            rows = self._con.execute(q, [*params, limit, offset]).fetchall()
        return [measurement_summary(r) for r in rows]

    def reclassify(self, classify: Classify, *, batch_size: int = 10_000,
                   observe: ReclassifyObserver | None = None) -> int:
        """Recomputes every stored verdict (and its rule and rules version) from the raw documents, after the
        rules change; the number of verdicts or kbps that changed."""
        judged = ReclassifyPass(classify, observe)
        with self._lock, self._errors():
            row = _first(self._con.execute("SELECT max(seq) FROM measurements").fetchall())
        before = int(row[0]) if row and row[0] is not None else 0  # rows stored before the pass began
        last = ""
        while True:
            with self._lock, self._errors():
                chunk = self._con.execute(
                    "SELECT uid, raw, verdict, kbps, verdict_rule, rules_version FROM measurements "
                    "WHERE uid > ? ORDER BY uid LIMIT ?",
                    [last, batch_size],
                ).fetchall()
            if not chunk:
                break
            last = chunk[-1][0]
            updates = []
            for uid, raw, *stored in chunk:
                new = judged.judge(uid, stored, self._codec.decompress(raw))
                if new is not None:
                    updates.append((uid, new))
            if updates:
                self._rewrite_verdicts(updates)
        if judged.restamps:
            version = judged.stamp_version
            with self._lock, self._errors():
                self._con.execute("UPDATE measurements SET rules_version = ? "
                                  "WHERE seq <= ? AND rules_version IS DISTINCT FROM ?", [version, before, version])
        if judged.changed:
            self._rebuild_rollup()
        return judged.changed

    def _rewrite_verdicts(self, updates: list[tuple[str, StoredVerdict]]) -> None:
        tbl = pa.table({
            "uid": [u for u, _ in updates],
            "verdict": [n.verdict for _, n in updates],
            "kbps": pa.array([n.kbps for _, n in updates], pa.float64()),
            "verdict_rule": pa.array([n.rule for _, n in updates], pa.string()),
            "rules_version": pa.array([n.rules_version for _, n in updates], pa.string()),
        })
        with self._lock, self._errors():
            self._con.register("_upd", tbl)
            try:
                self._con.execute(
                    "UPDATE measurements SET verdict = u.verdict, kbps = u.kbps, "
                    "verdict_rule = u.verdict_rule, rules_version = u.rules_version FROM _upd u "
                    "WHERE measurements.uid = u.uid"
                )
            finally:
                self._con.unregister("_upd")

    def verdicts(self, uids: Sequence[str]) -> dict[str, StoredVerdict]:
        """The stored judgment of each of these uids that is stored (rule and version None in a store that
        predates them)."""
        if not uids:
            return {}
        extra = "verdict_rule, rules_version" if self._has_provenance_columns() else "NULL, NULL"
        with self._lock, self._errors():
            rows = self._con.execute(f"SELECT uid, verdict, kbps, {extra} FROM measurements "
                                     "WHERE uid IN (SELECT unnest(?))", [list(uids)]).fetchall()
        return {r[0]: StoredVerdict(*r[1:]) for r in rows}

    def _has_provenance_columns(self) -> bool:
        """Whether the provenance migration ran (a store opened read-only may predate it). Not cached, unlike
        the witness columns': cheap, and called once per verdicts() call."""
        with self._lock:
            try:
                return self.schema_version() >= PROVENANCE_VERSION
            except duckdb.Error:
                return False

    def example_uids(
        self, *, country: str | None, since: datetime, until: datetime, asns: Sequence[int] = (),
        platforms: Sequence[str] = (), verdicts: Sequence[str] = (), limit: int = 5,
    ) -> list[str]:
        """A few measurement ids that show an incident (its evidence), earliest first."""
        clauses = ["t >= ?", "t < ?"]
        params: list[Any] = [_naive(since), _naive(until)]
        for column, values in (("asn", list(asns)), ("platform", list(platforms)), ("verdict", list(verdicts))):
            if values:
                clauses.append(f"list_contains(?, {column})")
                params.append(values)
        if country:
            clauses.append("cc = ?")
            params.append(country.upper())
        q = f"SELECT uid FROM measurements WHERE {' AND '.join(clauses)} ORDER BY t, uid LIMIT ?"
        with self._lock, self._errors():
            return [r[0] for r in self._con.execute(q, [*params, limit]).fetchall()]

    def uid_credentials(self, uids: Sequence[str]) -> dict[str, str | None]:
        """The credential that brought each of these uids, for those stored (None: stored before issue #22)."""
        if not uids or not self._has_witness_columns():
            return {}
        with self._lock, self._errors():
            rows = self._con.execute("SELECT uid, credential FROM measurements WHERE uid IN (SELECT unnest(?))",
                                     [list(uids)]).fetchall()
        return {r[0]: r[1] for r in rows}

    def purge_credential(self, credential: str) -> dict[str, tuple[datetime, datetime]]:
        """Deletes every measurement `credential` brought, in one transaction; the countries and time spans it
        covered. The rollups are rebuilt (they only ever add)."""
        if not self._has_witness_columns():
            return {}
        with self._lock, self._errors():
            con = self._con
            with transaction(con):
                rows = con.execute("SELECT cc, min(t), max(t) FROM measurements WHERE credential = ? GROUP BY cc",
                                   [credential]).fetchall()
                con.execute("DELETE FROM measurements WHERE credential = ?", [credential])
                if credential.startswith("probe:"):  # its heartbeats feed detection too
                    con.execute("DELETE FROM probe_heartbeats WHERE probe = ?", [credential[len("probe:"):]])
            self._latest = (0, None)
            if rows:
                self._rebuild_rollup()
        now = datetime.now(UTC)
        return {cc: (sane_time(lo.replace(tzinfo=UTC), now), sane_time(hi.replace(tzinfo=UTC), now))
                for cc, lo, hi in rows}


_CSV_TEXT_COLUMNS = CSV_TEXT_NAMES


def _csv_safe_columns(cols: str) -> str:
    """The export's columns with each text column's formula-like cells neutralised (observatory.encoding.csv_cell,
    in SQL): a network name or input of '=HYPERLINK(...)' is shown as text by a spreadsheet."""
    from observatory.encoding import CSV_FORMULA_STARTS

    starts = ", ".join(f"chr({ord(c)})" for c in CSV_FORMULA_STARTS)
    out = []
    for col in (c.strip() for c in cols.split(",")):
        if col in _CSV_TEXT_COLUMNS:
            col = f"CASE WHEN left({col}, 1) IN ({starts}) THEN '''' || {col} ELSE {col} END AS {col}"
        out.append(col)
    return ", ".join(out)
