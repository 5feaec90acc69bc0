"""Time series cells: what the store aggregates from measurements and the detector reads.

A cell is one time bucket of one (country, network, region, platform) series. Counting distinct probes, not
measurements, is what keeps a single chatty or faulty probe from moving a series by itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(slots=True, kw_only=True)
class SeriesCell:
    bucket: datetime
    country: str
    asn: int
    region: str | None
    platform: str
    total: int = 0
    ok: int = 0
    down: int = 0
    anomalous: int = 0
    probes: int = 0
    anomalous_probes: int = 0
    by_technique: dict[str, int] = field(default_factory=dict)
    median_kbps: float | None = None
    network_name: str = ""
    # distinct probes whose measurement was `down` (the control fails too), and the probe keys behind
    # `anomalous_probes`: the detector counts independent evidence across buckets and networks with them.
    down_probes: int = 0
    anomalous_keys: tuple[str, ...] = ()
    # "technique probe_key" for each anomalous probe: whether independent probes agree on the technique
    technique_keys: tuple[str, ...] = ()
    # (probe_key, test_name, that probe's median kbps in the cell for that test) for each probe that timed a
    # transfer: throttling is judged per probe against the series' baseline for the same test (each test times
    # its own kind of transfer: a web page's body, an IM test's small exchanges), so one slow probe is one
    # witness however often it runs
    probe_kbps: tuple[tuple[str, str, float], ...] = ()

    @property
    def anomaly_share(self) -> float:
        judged = self.ok + self.anomalous
        return self.anomalous / judged if judged else 0.0


DEFAULT_BUCKET_SECONDS = 300
