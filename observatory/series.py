"""Time series cells: what the store aggregates from measurements and the detector reads.

A cell is one time bucket of one (country, network, region, platform) series. Counting distinct probes, not
measurements, is what keeps a single chatty or faulty probe from moving a series by itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple


class Witness(NamedTuple):
    """One anomalous probe and the technique it saw: the unit of independent evidence the detector counts."""

    technique: str
    probe: str


def parse_witness(text: str) -> Witness:
    """A witness from the stores' compact "technique probe_key" text.

    Split at the FIRST space: a technique is one word (vocab.Technique), while a probe key is whatever
    ingest and the collector make of a probe's identity, which this layer does not get to restrict."""
    technique, sep, probe = text.partition(" ")
    if not sep:
        raise ValueError(f"witness {text!r}: expected 'technique probe_key'")
    return Witness(technique, probe)


def parse_witnesses(texts: Iterable[str | None]) -> tuple[Witness, ...]:
    """The sorted, distinct witnesses of a cell from the store's texts (NULLs from an empty aggregate dropped)."""
    return tuple(sorted({parse_witness(t) for t in texts if t is not None}))


def witness_probes(ws: Iterable[Witness]) -> tuple[str, ...]:
    """The sorted, distinct probe keys behind some witnesses (a probe seeing two techniques is one probe)."""
    return tuple(sorted({w.probe for w in ws}))


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
    # (technique, probe key) for each anomalous probe: whether independent probes agree on the technique
    witnesses: tuple[Witness, ...] = ()
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
