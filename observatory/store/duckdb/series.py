"""Series aggregated inside DuckDB for detection, and incremental detection's cue."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from observatory.measurement import sane_time
from observatory.series import SeriesCell, parse_witnesses, witness_probes
from observatory.store.base import (
    Changes,
    DownCount,
    FailingProbe,
    TechniqueProbes,
)
from observatory.store.duckdb.core import _TECHNIQUE_LIST, DuckDBCore, _first, where
from observatory.store.shared import check_bucket, window_conditions


class SeriesMixin(DuckDBCore):

    # --- series -----------------------------------------------------------------------------------------

    def series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]:
        tech_cols = ", ".join(f"count(*) FILTER (WHERE verdict = '{t}') AS \"{t}\"" for t in _TECHNIQUE_LIST)
        tech_sums = ", ".join(f"sum(\"{t}\")::BIGINT" for t in _TECHNIQUE_LIST)
        tech_in = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
        bucket_seconds = check_bucket(bucket_seconds)
        window, params = where(window_conditions(since, until, countries))
        # two levels, as in network_series: per probe first (its verdicts, throughputs and techniques), then per
        # cell; the same cells as count(DISTINCT probe_key) over the measurements, with one grouping of the
        # measurements instead of a distinct count per cell
        q = f"""
            WITH per_probe AS (
                SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn,
                       coalesce(region, '') AS region, platform, probe_key,
                       count(*) AS n,
                       count(*) FILTER (WHERE verdict = 'ok') AS ok,
                       count(*) FILTER (WHERE verdict = 'down') AS dn,
                       count(*) FILTER (WHERE verdict IN ({tech_in})) AS bad,
                       list(kbps) FILTER (WHERE kbps IS NOT NULL) AS ks,
                       string_agg(translate(test_name, ',:=' || chr(31), '____') || ':' || kbps::VARCHAR, ',')
                           FILTER (WHERE kbps IS NOT NULL) AS tks,
                       any_value(network) AS network,
                       list(DISTINCT verdict) FILTER (WHERE verdict IN ({tech_in})) AS vs,
                       {tech_cols}
                FROM measurements
                {window} AND platform IS NOT NULL
                GROUP BY ALL
            )
            SELECT b, cc, asn, region, platform, sum(n)::BIGINT, sum(ok)::BIGINT, sum(dn)::BIGINT,
                   sum(bad)::BIGINT, count(probe_key), count(probe_key) FILTER (WHERE bad > 0),
                   list_median(flatten(list(ks))), any_value(network), count(probe_key) FILTER (WHERE dn > 0),
                   flatten(list(list_transform(vs, lambda v: v || ' ' || probe_key)) FILTER (WHERE bad > 0)),
                   {tech_sums},
                   string_agg(replace(probe_key, chr(31), ' ') || '=' || tks, chr(31))
                       FILTER (WHERE len(ks) > 0 AND platform != 'control')
            FROM per_probe
            GROUP BY ALL
            ORDER BY b, cc, asn, region, platform
        """
        with self._lock, self._errors():
            rows = self._con.execute(q, params).fetchall()
        buckets: dict[int, datetime] = {}
        return [_cell(r, buckets) for r in rows]

    def network_series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]:
        """Coarse cells per (bucket, country, network, platform), no regions or probe keys: the detector's
        cheap first pass over everything, to pick the networks worth a fine look."""
        tech_in = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
        bucket_seconds = check_bucket(bucket_seconds)
        window, params = where(window_conditions(since, until, countries))
        # two levels: per probe first, then per cell. Counting probes per cell from the per-probe rows gives what
        # count(DISTINCT ...) FILTER over the measurements gives, without a distinct count per cell.
        q = f"""
            WITH per_probe AS (
                SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, platform, probe_key,
                       count(*) AS n, count(*) FILTER (WHERE verdict = 'ok') AS ok,
                       count(*) FILTER (WHERE verdict = 'down') AS dn,
                       count(*) FILTER (WHERE verdict IN ({tech_in})) AS bad,
                       list(kbps) FILTER (WHERE kbps IS NOT NULL) AS ks
                FROM measurements
                {window} AND platform IS NOT NULL
                GROUP BY ALL
            )
            SELECT b, cc, asn, platform, sum(n)::BIGINT, sum(ok)::BIGINT, sum(dn)::BIGINT, sum(bad)::BIGINT,
                   count(probe_key), count(probe_key) FILTER (WHERE bad > 0), count(probe_key) FILTER (WHERE dn > 0),
                   list_median(flatten(list(ks)))
            FROM per_probe
            GROUP BY ALL
        """
        with self._lock, self._errors():
            rows = self._con.execute(q, params).fetchall()
        buckets: dict[int, datetime] = {}
        out = []
        for b, cc, asn, platform, total, ok, down, bad, probes, bad_probes, down_probes, kbps in rows:
            bucket = buckets.get(b)
            if bucket is None:
                bucket = buckets[b] = datetime.fromtimestamp(b, UTC)
            out.append(SeriesCell(bucket=bucket, country=cc, asn=asn, region=None, platform=platform, total=total,
                                  ok=ok, down=down, anomalous=bad, probes=probes, anomalous_probes=bad_probes,
                                  down_probes=down_probes, median_kbps=kbps))
        return out

    def failing_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[FailingProbe]:
        """Per probe and bucket in which its control failed: each target's measurements and failures."""
        tech_in = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
        bucket_seconds = check_bucket(bucket_seconds)
        window, params = where(window_conditions(since, until, countries))
        params = params + params
        q = f"""
            WITH lost AS (
                SELECT DISTINCT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, probe_key
                FROM measurements
                {window} AND platform = 'control' AND verdict IN ({tech_in})
                      AND probe_key IS NOT NULL
            )
            SELECT m.b, m.cc, m.asn, coalesce(m.region, '') AS region, m.probe_key, m.platform, count(*),
                   count(*) FILTER (WHERE m.verdict IN ({tech_in}))
            FROM (SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, region, probe_key,
                         platform, verdict
                  FROM measurements {window} AND platform IS NOT NULL) m
            SEMI JOIN lost USING (b, cc, asn, probe_key)
            GROUP BY ALL
            ORDER BY ALL
        """
        with self._lock, self._errors():
            rows = self._con.execute(q, params).fetchall()
        stamps = {b: datetime.fromtimestamp(b, UTC) for b in {r[0] for r in rows}}
        return [FailingProbe(bucket=stamps[b], country=cc, asn=asn, region=region, probe=probe,
                             platform=platform, total=total, anomalous=bad)
                for b, cc, asn, region, probe, platform, total, bad in rows]

    def technique_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[TechniqueProbes]:
        """Distinct probes per anomaly technique, per bucket, network and target (anomalous measurements only)."""
        tech_in = ", ".join(f"'{t}'" for t in _TECHNIQUE_LIST)
        bucket_seconds = check_bucket(bucket_seconds)
        window, params = where(window_conditions(since, until, countries))
        q = f"""
            SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, platform, verdict,
                   count(DISTINCT probe_key)
            FROM measurements
            {window} AND platform IS NOT NULL AND verdict IN ({tech_in})
            GROUP BY ALL
            ORDER BY ALL
        """
        with self._lock, self._errors():
            rows = self._con.execute(q, params).fetchall()
        stamps = {b: datetime.fromtimestamp(b, UTC) for b in {r[0] for r in rows}}
        return [TechniqueProbes(bucket=stamps[b], country=cc, asn=asn, platform=platform,
                                technique=technique, probes=n) for b, cc, asn, platform, technique, n in rows]

    def down_counts(
        self, *, since: datetime, until: datetime, bucket_seconds: int, series: Sequence[tuple[str, int, str]]
    ) -> list[DownCount]:
        """(bucket, country, network, platform, probes, probes that saw it down) for a few series and a time."""
        bucket_seconds = check_bucket(bucket_seconds)
        if not series:
            return []
        keys = sorted({f"{cc.upper()}:{asn}:{platform}" for cc, asn, platform in series})
        window, params = where(window_conditions(since, until))
        q = f"""
            SELECT (epoch(t)::BIGINT // {bucket_seconds}) * {bucket_seconds} AS b, cc, asn, platform,
                   count(DISTINCT probe_key), count(DISTINCT probe_key) FILTER (WHERE verdict = 'down')
            FROM measurements
            {window} AND platform IS NOT NULL AND list_contains(?, cc || ':' || asn || ':' || platform)
            GROUP BY ALL
            ORDER BY ALL
        """
        with self._lock, self._errors():
            rows = self._con.execute(q, [*params, keys]).fetchall()
        return [DownCount(datetime.fromtimestamp(b, UTC), cc, asn, platform, n, d)
                for b, cc, asn, platform, n, d in rows]

    def changes_since(self, seq: int) -> Changes:
        with self._lock, self._errors():
            rows = self._con.execute(
                "SELECT cc, min(t), max(t), max(seq) FROM measurements WHERE seq > ? GROUP BY cc", [seq]
            ).fetchall()
            top = _first(self._con.execute("SELECT coalesce(max(seq), 0) FROM measurements").fetchall())
        now = datetime.now(UTC)
        # a time a client made up (year 1, 9999) stored before the checks must not reach detection's arithmetic
        return Changes(
            max_seq=int(top[0]) if top else 0,
            spans={cc: (sane_time(lo.replace(tzinfo=UTC), now), sane_time(hi.replace(tzinfo=UTC), now))
                   for cc, lo, hi, _ in rows},
        )

    def countries(self) -> list[str]:
        with self._lock, self._errors():
            return [r[0] for r in self._con.execute("SELECT DISTINCT cc FROM measurements ORDER BY cc").fetchall()]


def _probe_kbps(text: str) -> tuple[tuple[str, str, float], ...]:
    """"probe=test:kbps,test:kbps" items joined by the unit separator -> (probe, test, median kbps), sorted."""
    by: dict[tuple[str, str], list[float]] = {}
    for item in text.split("\x1f"):
        key, _, values = item.rpartition("=")
        for pair in values.split(","):
            test, _, value = pair.rpartition(":")
            by.setdefault((key, test), []).append(float(value))
    return tuple(sorted((k, t, vs[0] if len(vs) == 1 else float(statistics.median(vs))) for (k, t), vs in by.items()))


def _cell(r: Sequence[Any], buckets: dict[int, datetime] | None = None) -> SeriesCell:
    end = 15 + len(_TECHNIQUE_LIST)
    techniques = {t: int(n) for t, n in zip(_TECHNIQUE_LIST, r[15:end], strict=True) if n}
    witnesses = parse_witnesses(r[14] or ())
    # each probe's median kbps per test, after the technique counts: the column added for throttling, as text
    # (a third of the cost of a list of structs; a double's text round-trips exactly; the control's speed is
    # not tested, so its cells leave it empty)
    probe_kbps = _probe_kbps(r[end]) if len(r) > end and r[end] else ()
    b = int(r[0])
    bucket = buckets.get(b) if buckets is not None else None
    if bucket is None:
        bucket = datetime.fromtimestamp(b, UTC)
        if buckets is not None:
            buckets[b] = bucket
    return SeriesCell(
        bucket=bucket,
        country=r[1],
        asn=int(r[2]),
        region=r[3] or None,
        platform=r[4],
        total=int(r[5]),
        ok=int(r[6]),
        down=int(r[7]),
        anomalous=int(r[8]),
        probes=int(r[9]),
        anomalous_probes=int(r[10]),
        median_kbps=float(r[11]) if r[11] is not None else None,
        network_name=r[12] or "",
        down_probes=int(r[13]),
        witnesses=witnesses,
        anomalous_keys=witness_probes(witnesses),
        by_technique=techniques,
        probe_kbps=probe_kbps,
    )
