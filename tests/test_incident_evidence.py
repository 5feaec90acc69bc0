"""The evidence the detector writes is what the store keeps and what the reports read: one typed record
(observatory.incident.Evidence), checked here end to end on an incident the detector itself found, and the
one deliberate-vs-fault judge (observatory/intent.py) giving detection and reports the same answer."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from report_world import PK_NETWORKS, cells, detected, utc

from observatory.incident import Evidence, Incident
from observatory.report.facts import anomaly_share, by_technique, network_names, onsets
from observatory.report.render import build_report
from observatory.store import open_store
from observatory.vocab import IncidentKind, Scope, Status

REPORT = Path(__file__).resolve().parent.parent / "observatory" / "report"
START, END = utc(2024, 1, 20, 14, 5), utc(2024, 1, 20, 17, 10)


@pytest.fixture(scope="module")
def found() -> Incident:
    return detected()


def test_what_the_detector_writes_comes_back_from_the_store_unchanged(found: Incident, tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "obs.duckdb"))
    try:
        store.save_incidents([found])
        back = store.incident(found.id)
    finally:
        store.close()
    assert back == found  # every field, the typed evidence included: nothing dropped, nothing added
    assert json.dumps(back.to_json()) == json.dumps(found.to_json())  # the wire, key order included
    assert back.evidence.extra == {}  # every key the detector writes is a field of the record
    assert (back.kind, back.scope, back.status) == (IncidentKind.PLATFORM_RESTRICTION, Scope.NATIONAL,
                                                    Status.ENDED)


def test_the_reports_read_the_detectors_own_evidence(found: Incident) -> None:
    ev = found.evidence
    assert ev.networks is not None and ev.probe_observations and ev.anomalous is not None
    assert network_names(found) == PK_NETWORKS
    assert onsets(found) == [n.onset for n in ev.networks] and all(t == START for t in onsets(found))
    assert anomaly_share(found) == pytest.approx(ev.anomalous / ev.probe_observations)
    assert by_technique(found) == dict(ev.by_technique or {}) and set(by_technique(found)) == {"tls_interference"}


def _read_by_reports() -> set[str]:
    """Every evidence key the report package reads, however it is spelled (a field, or the old dict's key)."""
    text = "\n".join(p.read_text() for p in REPORT.glob("*.py"))
    keys = set(re.findall(r"evidence\.(?!get\b)(\w+)", text))
    keys |= set(re.findall(r"evidence(?:\.get\(|\[)\"(\w+)\"", text))
    return keys


def test_reports_read_no_key_the_detector_does_not_write(found: Incident) -> None:
    written = set(found.to_json()["evidence"])
    # written by the other writers of evidence: outside-in signals (detect/outside.py), the series link
    # (detect.link_series) and the probes flagged as faulty, none of which this one incident has
    elsewhere = {"signals", "previous_episodes", "flagged_probes"}
    read = _read_by_reports()
    assert read, "the scan found no read at all: the pattern no longer matches the code"
    assert read <= written | elsewhere, sorted(read - written - elsewhere)
    assert elsewhere <= set(Evidence.__dataclass_fields__)


def test_an_older_stores_unknown_keys_survive_a_read_and_write() -> None:
    old = {"probes": 4, "networks": [{"asn": "AS17557", "name": "PTCL", "onset": "2024-01-20T14:05:00Z"}],
           "source": "simulator ground truth", "coverage": 0.5}
    ev = Evidence.from_json(old)
    assert ev.extra == {"source": "simulator ground truth", "coverage": 0.5}
    assert ev.networks is not None and ev.networks[0].asn == 17557 and ev.networks[0].onset == START
    again = ev.to_json()
    assert {k: again[k] for k in ("probes", "source", "coverage")} == {"probes": 4, "source": "simulator ground truth",
                                                                       "coverage": 0.5}
    assert "series" not in again  # a key the store never held is not invented on the way out


@pytest.mark.parametrize("minutes", [0, 4, 10])
def test_detection_and_reports_agree_on_a_synchronized_onset(minutes: int) -> None:
    """Onsets staggered by `minutes` per network (0 to 5x that across six networks): the detector's sync
    bonus and the report's simultaneity point come from one judge, so they agree whatever the spread."""
    stagger = timedelta(minutes=minutes)
    inc = detected(stagger=stagger)
    series = cells(start=START - timedelta(hours=6), end=END + timedelta(hours=3), blocked=[(START, END)],
                   stagger=stagger)
    a = build_report(inc, cells=series).assessment
    report_says = any(p.test == "simultaneity" for p in a.against)
    synced = detected()  # the same block at the same moment everywhere: the bonus is surely in its score
    detector_says = inc.assessment.deliberate == pytest.approx(synced.assessment.deliberate)
    assert report_says == detector_says, (minutes, inc.assessment, a.against, a.supporting)
