"""Probes whose results disagree with every other probe of their network (a faulty or hostile probe).

Such a probe is never evidence of an incident on its own (confirmation counts distinct probes); naming it in
the evidence lets an analyst see why a series wobbled, and lets an operator fix or revoke it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from observatory.catalog import CONTROL
from observatory.detect.series import ALL_PLATFORMS, Tracks


def disagreeing_probes(tracks: Tracks, *, min_buckets: int = 3, min_targets: int = 3,
                       others_max_share: float = 0.2) -> list[dict[str, Any]]:
    """Probe keys failing several targets at once, in several buckets, while the rest of the network is fine."""
    # per network and bucket: probe-observations and anomalous ones, over all targets
    per_bucket: dict[tuple[str, int, int], list[int]] = defaultdict(lambda: [0, 0])
    per_key: dict[tuple[str, int, str], dict[str, Any]] = {}
    for (country, asn, platform), obs in tracks.series.items():
        if platform == ALL_PLATFORMS:
            continue
        for o in obs:
            acc = per_bucket[(country, asn, o.t)]
            acc[0] += o.n + len(o.folded)
            acc[1] += o.k + len(o.folded)
            for key in o.keys | o.folded:
                if key.startswith("cell:"):
                    continue
                rec = per_key.setdefault((country, asn, key), {"buckets": defaultdict(set), "targets": set(),
                                                                "bad": 0})
                rec["buckets"][o.t].add(platform)
                rec["targets"].add(platform)
                rec["bad"] += 1
    flagged = []
    for (country, asn, key), rec in sorted(per_key.items()):
        # buckets in which this probe failed on several targets at once (random failures rarely coincide)
        by_bucket = rec["buckets"]
        rec["buckets"] = {t for t, targets in by_bucket.items() if len(targets) >= min_targets}
        if len(rec["buckets"]) < min_buckets:
            continue
        rec["bad"] = sum(len(targets) for t, targets in by_bucket.items() if t in rec["buckets"])
        # the rest of the network over the same span (it may not measure in exactly the same buckets)
        lo, hi = min(rec["buckets"]), max(rec["buckets"])
        n = k = 0
        for (cc, a, t), (bn, bk) in per_bucket.items():
            if cc == country and a == asn and lo <= t <= hi:
                n += bn
                k += bk
        others_n, others_k = n - rec["bad"], k - rec["bad"]
        if others_n <= 0 or others_k / others_n > others_max_share:
            continue  # alone on its network, or the others see it too: not a disagreement
        flagged.append({
            "probe": key, "country": country, "asn": f"AS{asn}",
            "first": datetime.fromtimestamp(min(rec["buckets"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "last": datetime.fromtimestamp(max(rec["buckets"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "anomalous_buckets": len(rec["buckets"]), "targets": sorted(rec["targets"]),
            "others_anomalous_share": round(others_k / others_n, 3),
        })
    return flagged


def isolated_probes(tracks: Tracks, *, others_max_share: float = 0.2, min_others: int = 2) -> set[str]:
    """Probe keys that lost everything, at some time, while the other probes of their network and region
    stayed fine (see `isolated_spans`)."""
    return set(isolated_spans(tracks, others_max_share=others_max_share, min_others=min_others))


def isolated_spans(tracks: Tracks, *, others_max_share: float = 0.2, min_others: int = 2,
                   split_seconds: int = 3600) -> dict[str, list[tuple[int, int]]]:
    """Probe key -> the spans (first, last bucket) in which it lost everything while the probes around it
    stayed fine.

    One installation failing alone (a faulty probe, a home router) is not a connectivity loss. Around it means,
    in this order: the other probes of its network and region (when they failed too, it was not alone); the
    probes of other networks in its region (likewise: a region cut off on every network); the other probes of
    its network across the country, and those of its network and region. Any of the last two at least
    `min_others` strong and mostly fine makes it isolated. A region whose only probe on that network goes dark
    while nobody else around can be compared is kept. Faults are independent, so three probes failing alone
    in three places are three faults, not a shutdown. A probe's failures more than `split_seconds` apart are
    separate spans, judged each on its own: a probe that was faulty one day is a fair witness on another.
    """
    controls: dict[tuple[str, int, str], list[Any]] = {}
    for (country, asn, target), obs in tracks.series.items():
        if target.startswith(CONTROL + "@"):
            controls[(country, asn, target.split("@", 1)[1])] = obs
    out: dict[str, list[tuple[int, int]]] = {}
    for (country, asn, region), obs in controls.items():
        runs: dict[str, list[list[int]]] = {}
        for o in obs:
            for key in o.keys:
                spans = runs.setdefault(key, [])
                if spans and o.t - spans[-1][1] <= split_seconds:
                    spans[-1][1] = o.t
                else:
                    spans.append([o.t, o.t])
        network = [v for (c, a, _r), v in controls.items() if c == country and a == asn and v is not obs]
        region_others = [v for (c, a, r), v in controls.items() if c == country and a != asn and r == region]
        for key, spans in runs.items():
            for lo, hi in spans:
                n, k = _counts([obs], lo, hi, key)
                if n and k > others_max_share * n:
                    continue  # its neighbours failed with it
                rn, rk = _counts(region_others, lo, hi, key)
                if rn and rk > others_max_share * rn:
                    continue  # the region failed on other networks too
                wn, wk = _counts(network, lo, hi, key)
                if (n >= min_others and k <= others_max_share * n) or (wn >= min_others
                                                                      and wk <= others_max_share * wn):
                    out.setdefault(key, []).append((lo, hi))
    return out


def _counts(series: list[list[Any]], lo: int, hi: int, key: str) -> tuple[int, int]:
    """Probe-observations and anomalous ones in buckets lo..hi of the series, without `key`'s own."""
    n = k = 0
    for obs in series:
        for o in obs:
            if lo <= o.t <= hi:
                mine = key in o.keys
                n += o.n - mine
                k += o.k - mine
    return n, k
