"""The dashboard's rollup in ClickHouse: additive counts per 5-minute bucket, summed by the engine."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from observatory.measurement import sane_time
from observatory.series import SeriesCell
from observatory.store.clickhouse.core import (
    _REBUILD,
    _TECH_IN,
    ROLLUP_BUCKET_SECONDS,
    ROLLUP_GEN_KEY,
    ROLLUP_SEQ_KEY,
    _read_time,
    _utc,
)
from observatory.store.clickhouse.records import RecordsMixin


class RollupMixin(RecordsMixin):

    def _rebuild_rollup(self) -> None:
        """The rollup again from every stored row, after verdicts were rewritten in place: folding only ever
        adds what is new, so the counts folded from the old verdicts would stay. The state says "rebuild"
        (-1) before the rollup is emptied, so a failure anywhere leaves a state the next refresh completes; a
        new generation gives the refolds deduplication tokens no earlier insert used."""
        with self._lock:
            if not int(self.get_state(ROLLUP_SEQ_KEY) or 0):
                return  # never built
            self.set_state(ROLLUP_GEN_KEY, str(int(self.get_state(ROLLUP_GEN_KEY) or 0) + 1))
            self.set_state(ROLLUP_SEQ_KEY, str(_REBUILD))
            self.refresh_rollup()

    # --- the dashboard's rollup -------------------------------------------------------------------------

    def refresh_rollup(self) -> int:
        """Folds measurements stored since the last call into series_rollup; returns how many were folded."""
        with self._lock:
            done = int(self.get_state(ROLLUP_SEQ_KEY) or 0)
            if done == _REBUILD:
                self._command("TRUNCATE TABLE {db}.series_rollup")
                self.set_state(ROLLUP_SEQ_KEY, "0")
                done = 0
            top = int(self._scalar("SELECT max(seq) FROM {db}.measurements") or 0)
            if top <= done:
                return 0
            generation = self.get_state(ROLLUP_GEN_KEY) or "0"
            # The token names the seq range (and the rollup's generation): if the state write below fails, the
            # retry's insert is dropped by the table's deduplication window instead of counting the range twice.
            self._command(
                f"""INSERT INTO {{db}}.series_rollup
                    SELECT toStartOfInterval(t, INTERVAL {ROLLUP_BUCKET_SECONDS} SECOND) AS b, cc, asn, platform,
                           any(network), count(), countIf(verdict = 'ok'), countIf(verdict = 'down'),
                           countIf(verdict IN ({_TECH_IN}))
                    FROM {{db}}.measurements
                    WHERE seq > {{done:UInt64}} AND seq <= {{top:UInt64}} AND platform != ''
                    GROUP BY b, cc, asn, platform""",
                {"done": done, "top": top},
                settings={"insert_deduplication_token": f"rollup-{generation}-{done}-{top}", "insert_deduplicate": 1},
            )
            self.set_state(ROLLUP_SEQ_KEY, str(top))
            return top - done

    def rollup(
        self, *, since: datetime, until: datetime, bucket_seconds: int, country: str | None = None,
        asn: int | None = None, platform: str | None = None,
    ) -> list[SeriesCell]:
        """Counts per (bucket, country, network, platform) from the rollup; bucket_seconds a multiple of 300."""
        bucket = max(ROLLUP_BUCKET_SECONDS, bucket_seconds - bucket_seconds % ROLLUP_BUCKET_SECONDS)
        clauses = ["b >= {since:DateTime('UTC')}", "b < {until:DateTime('UTC')}"]
        params: dict[str, Any] = {"since": _utc(since), "until": _utc(until)}
        if country:
            clauses.append("cc = {cc:String}")
            params["cc"] = country.upper()
        if asn is not None:
            clauses.append("asn = {asn:Int64}")
            params["asn"] = asn
        if platform:
            clauses.append("platform = {platform:String}")
            params["platform"] = platform
        q = f"""SELECT intDiv(toUnixTimestamp(b), {bucket}) * {bucket} AS bb, cc, asn, platform,
                       any(network), sum(total), sum(ok), sum(down), sum(anomalous)
                FROM {{db}}.series_rollup WHERE {" AND ".join(clauses)}
                GROUP BY bb, cc, asn, platform ORDER BY bb, cc, asn, platform"""
        return [
            SeriesCell(bucket=datetime.fromtimestamp(int(r[0]), UTC), country=r[1], asn=int(r[2]), region=None,
                       platform=r[3], network_name=r[4] or "", total=int(r[5]), ok=int(r[6]), down=int(r[7]),
                       anomalous=int(r[8]))
            for r in self._rows(q, params)
        ]

    def latest_time(self) -> datetime | None:
        """The time of the newest measurement stored (the data's "now" when replaying the past)."""
        newest = _read_time(self._scalar("SELECT maxOrNull(t) FROM {db}.measurements"))
        return None if newest is None else sane_time(newest, datetime.now(UTC))  # never a stored 2099
