"""Series aggregated inside ClickHouse for detection, and incremental detection's cue."""

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
from observatory.store.clickhouse.core import _TECH_IN, _TECHNIQUE_LIST, ClickHouseCore, _utc, where
from observatory.store.shared import check_bucket, window_conditions


class SeriesMixin(ClickHouseCore):

    # --- series -----------------------------------------------------------------------------------------

    def series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]:
        bucket = check_bucket(bucket_seconds)
        tech_cols = ", ".join(f"countIf(verdict = '{t}')" for t in _TECHNIQUE_LIST)
        window, params = where(window_conditions(since, until, countries))
        # quantileExactInclusive(0.5) interpolates between the two middle values, like DuckDB's median.
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, ifNull(region, '') AS reg,
                   platform,
                   count() AS total,
                   countIf(verdict = 'ok') AS ok,
                   countIf(verdict = 'down') AS down,
                   countIf(verdict IN ({_TECH_IN})) AS anomalous,
                   uniqExact(probe_key) AS probes,
                   uniqExactIf(probe_key, verdict IN ({_TECH_IN})) AS anomalous_probes,
                   quantileExactInclusive(0.5)(kbps) AS median_kbps,
                   any(network) AS network_name,
                   uniqExactIf(probe_key, verdict = 'down') AS down_probes,
                   groupUniqArrayIf(concat(verdict, ' ', probe_key), verdict IN ({_TECH_IN})) AS technique_keys,
                   {tech_cols},
                   groupArrayIf((probe_key, test_name, assumeNotNull(kbps)),
                                kbps IS NOT NULL AND platform != 'control') AS probe_kbps
            FROM {{db}}.measurements
            WHERE {window} AND platform != ''
            GROUP BY b, cc, asn, reg, platform
            ORDER BY b, cc, asn, reg, platform
        """
        return [_cell(r) for r in self._rows(q, params)]

    def network_series(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[SeriesCell]:
        """Coarse cells per (bucket, country, network, platform), no regions or probe keys: the detector's
        cheap first pass over everything, to pick the networks worth a fine look."""
        bucket = check_bucket(bucket_seconds)
        window, params = where(window_conditions(since, until, countries))
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, platform,
                   count(), countIf(verdict = 'ok'), countIf(verdict = 'down'), countIf(verdict IN ({_TECH_IN})),
                   uniqExact(probe_key), uniqExactIf(probe_key, verdict IN ({_TECH_IN})),
                   uniqExactIf(probe_key, verdict = 'down'), quantileExactInclusive(0.5)(kbps)
            FROM {{db}}.measurements
            WHERE {window} AND platform != ''
            GROUP BY b, cc, asn, platform
            ORDER BY b, cc, asn, platform
        """
        return [SeriesCell(bucket=datetime.fromtimestamp(int(r[0]), UTC), country=r[1], asn=int(r[2]), region=None,
                           platform=r[3], total=int(r[4]), ok=int(r[5]), down=int(r[6]), anomalous=int(r[7]),
                           probes=int(r[8]), anomalous_probes=int(r[9]), down_probes=int(r[10]),
                           median_kbps=_median(r[11]))
                for r in self._rows(q, params)]

    def failing_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[FailingProbe]:
        """Per probe and bucket in which its control failed: each target's measurements and failures."""
        bucket = check_bucket(bucket_seconds)
        window, params = where(window_conditions(since, until, countries))
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, ifNull(region, '') AS reg,
                   probe_key, platform, count(), countIf(verdict IN ({_TECH_IN}))
            FROM {{db}}.measurements
            WHERE {window} AND platform != ''
              AND (intDiv(toUnixTimestamp(t), {bucket}) * {bucket}, cc, asn, probe_key) IN (
                  SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket}, cc, asn, probe_key
                  FROM {{db}}.measurements
                  WHERE {window} AND platform = 'control'
                        AND verdict IN ({_TECH_IN}) AND probe_key != '')
            GROUP BY b, cc, asn, reg, probe_key, platform
            ORDER BY b, cc, asn, reg, probe_key, platform
        """
        return [FailingProbe(bucket=datetime.fromtimestamp(int(r[0]), UTC), country=r[1], asn=int(r[2]), region=r[3],
                             probe=r[4], platform=r[5], total=int(r[6]), anomalous=int(r[7]))
                for r in self._rows(q, params)]

    def technique_probes(
        self, *, since: datetime, until: datetime, bucket_seconds: int, countries: Sequence[str] | None = None
    ) -> list[TechniqueProbes]:
        """Distinct probes per anomaly technique, per bucket, network and target (anomalous measurements only)."""
        bucket = check_bucket(bucket_seconds)
        window, params = where(window_conditions(since, until, countries))
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, platform, verdict,
                   uniqExact(probe_key)
            FROM {{db}}.measurements
            WHERE {window} AND platform != '' AND verdict IN ({_TECH_IN})
            GROUP BY b, cc, asn, platform, verdict
            ORDER BY b, cc, asn, platform, verdict
        """
        return [TechniqueProbes(bucket=datetime.fromtimestamp(int(r[0]), UTC), country=r[1], asn=int(r[2]),
                                platform=r[3], technique=r[4], probes=int(r[5])) for r in self._rows(q, params)]

    def down_counts(
        self, *, since: datetime, until: datetime, bucket_seconds: int, series: Sequence[tuple[str, int, str]]
    ) -> list[DownCount]:
        """(bucket, country, network, platform, probes, probes that saw it down) for a few series and a time."""
        bucket = check_bucket(bucket_seconds)
        if not series:
            return []
        window, params = where(window_conditions(since, until))
        params["keys"] = sorted({f"{cc.upper()}:{asn}:{platform}" for cc, asn, platform in series})
        q = f"""
            SELECT intDiv(toUnixTimestamp(t), {bucket}) * {bucket} AS b, cc, asn, platform,
                   uniqExact(probe_key), uniqExactIf(probe_key, verdict = 'down')
            FROM {{db}}.measurements
            WHERE {window} AND platform != ''
              AND concat(cc, ':', toString(asn), ':', platform) IN {{keys:Array(String)}}
            GROUP BY b, cc, asn, platform
            ORDER BY b, cc, asn, platform
        """
        return [DownCount(datetime.fromtimestamp(int(r[0]), UTC), r[1], int(r[2]), r[3], int(r[4]), int(r[5]))
                for r in self._rows(q, params)]

    def changes_since(self, seq: int) -> Changes:
        rows = self._rows("SELECT cc, min(t), max(t) FROM {db}.measurements WHERE seq > {seq:UInt64} GROUP BY cc",
                          {"seq": max(0, seq)})
        top = int(self._scalar("SELECT max(seq) FROM {db}.measurements") or 0)
        now = datetime.now(UTC)
        # a time a client made up (year 1, 2299) stored before the checks must not reach detection's arithmetic
        return Changes(max_seq=top, spans={cc: (sane_time(_utc(lo), now), sane_time(_utc(hi), now))
                                           for cc, lo, hi in rows})

    def countries(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT DISTINCT cc FROM {db}.measurements ORDER BY cc")]


def _per_probe_median(triples: Sequence[Any]) -> tuple[tuple[str, str, float], ...]:
    """(probe_key, test_name, kbps) of a cell -> each probe's median per test, as DuckDB's series computes it
    (none for the control, whose speed is not tested)."""
    by: dict[tuple[str, str], list[float]] = {}
    for key, test, v in triples or ():
        by.setdefault((key, test), []).append(float(v))
    return tuple(sorted((k, t, float(statistics.median(vs))) for (k, t), vs in by.items()))


def _cell(r: Sequence[Any]) -> SeriesCell:
    end = 15 + len(_TECHNIQUE_LIST)
    techniques = {t: int(n) for t, n in zip(_TECHNIQUE_LIST, r[15:end], strict=True) if n}
    witnesses = parse_witnesses(r[14] or ())
    return SeriesCell(
        bucket=datetime.fromtimestamp(int(r[0]), UTC),
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
        median_kbps=_median(r[11]),
        network_name=r[12] or "",
        down_probes=int(r[13]),
        witnesses=witnesses,
        anomalous_keys=witness_probes(witnesses),
        by_technique=techniques,
        probe_kbps=_per_probe_median(r[end]) if len(r) > end else (),
    )


def _median(value: Any) -> float | None:
    """ClickHouse's median of no values is NULL (or NaN for a non-Nullable column): None either way."""
    return float(value) if value is not None and value == value else None
