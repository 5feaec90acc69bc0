"""Outside-in signals in the simulated world, and what detection makes of them.

The simulator's IODA-like series (simulate/signals.py) come from the world's ground truth; detection reads them
from a real DuckDB store, as `signals import` would leave them. A region whose few volunteers fall silent is
confirmed only because its own series dropped too; a sparse region's series that dips by chance is no witness.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

from observatory.detect.outside import fuse, signal_incidents
from observatory.incident import Incident
from observatory.ingest import ingest_paths
from observatory.service import run_detection, stored_incidents
from observatory.simulate import Model, Scenario, draw_model, load_scenario, write_simulation
from observatory.simulate.signals import outside_signals
from observatory.simulate.world import VOLUNTEER, build_world
from observatory.store import open_store
from observatory.vocab import Scope, Status

ROOT = Path(__file__).resolve().parent.parent
TIGRAY = ROOT / "scenarios" / "et-tigray-2020.toml"


def _few_volunteers() -> Scenario:
    """Tigray's cut in a country of six volunteer installations over four regions: two in Tigray."""
    sc = load_scenario(TIGRAY)
    country = sc.countries[0]
    return replace(sc, countries=(replace(country, networks=(replace(country.networks[0], probes=2),)),))


def _detect(sc: Scenario, model: Model, tmp: Path) -> list[Incident]:
    data = tmp / "m.jsonl"
    write_simulation(sc, out=data, activity=VOLUNTEER, model=model)
    store = open_store(str(tmp / "s.duckdb"))
    try:
        ingest_paths(store, [data], rejects_path=tmp / "rejects.jsonl")
        store.insert_signals(outside_signals(sc, model))
        run_detection(store, full=True)
        return [i for i in stored_incidents(store) if i.status != "suspected"]
    finally:
        store.close()


def test_a_region_cut_seen_by_its_signal_and_two_silent_volunteers_is_a_confirmed_regional_loss(
        tmp_path: Path) -> None:
    # sparse, noisy series: the region's few /24 blocks answer by chance too, so only the rule that weighs a
    # count's drop against its chance variation keeps the noise of the other regions out of the incident
    model = replace(draw_model(0, VOLUNTEER), signals="noisy")
    sc = _few_volunteers()
    silent = [p for p in build_world(sc, VOLUNTEER, model).probes if p.region == "Tigray"]
    assert len(silent) == 2  # the case of the issue: a region whose volunteers are few
    [inc] = _detect(sc, model, tmp_path)
    assert (inc.kind, inc.scope, inc.regions) == ("connectivity_loss", Scope.REGIONAL, ("Tigray",))
    cut = sc.events[0].start
    assert isinstance(cut, datetime)
    assert abs((inc.start - cut).total_seconds()) <= 15 * 60
    # three /24 blocks: a count that small needs a couple of hours of silence to be beyond chance
    assert inc.confirmed_at is not None and (inc.confirmed_at - cut).total_seconds() <= 3 * 3600


def test_without_signals_the_same_silence_is_not_a_confirmed_loss(tmp_path: Path) -> None:
    # the counterpart: two volunteers' silence alone is no witness (the default world has no signals)
    model = replace(draw_model(0, VOLUNTEER), signals="absent")
    sc = _few_volunteers()
    assert outside_signals(sc, model) == []
    assert not [i for i in _detect(sc, model, tmp_path) if "Tigray" in i.regions]


def test_noisy_signals_of_quiet_worlds_raise_nothing() -> None:
    for name in ("ke-quiet-week", "ke-br-quiet-month"):
        sc = load_scenario(ROOT / "scenarios" / f"{name}.toml")
        points = outside_signals(sc, Model(signals="noisy"))
        assert len({p.region for p in points}) > 3  # every region has its own small series
        assert signal_incidents(points) == [], name


def test_a_platform_restriction_leaves_every_signal_as_it_is() -> None:
    sc = load_scenario(TIGRAY)
    block = replace(sc.events[0], kind="restriction", platforms=("twitter",), technique="dns")
    with_block = outside_signals(replace(sc, events=(block,)), Model(signals="present"))
    assert with_block == outside_signals(replace(sc, events=()), Model(signals="present"))


def test_the_default_model_emits_no_signals() -> None:
    assert Model().signals == "absent" and outside_signals(load_scenario(TIGRAY), Model()) == []


def test_a_suspicion_of_the_probes_does_not_widen_what_only_the_signals_confirm() -> None:
    # the probes suspect a national silence (not confirmed); only Tigray's series confirms: the incident is
    # Tigray's, confirmed, never a national one made of a suspicion and one region's signal
    [seen] = signal_incidents(outside_signals(_few_volunteers(), Model(signals="present")))
    assert (seen.scope, seen.regions, seen.status) == (Scope.REGIONAL, ("Tigray",), Status.CONFIRMED)
    suspicion = seen.with_(scope=Scope.NATIONAL, regions=("Addis Ababa", "Amhara", "Oromia", "Tigray"),
                           asns=(24757,), status=Status.SUSPECTED, confirmed_at=None, end=None)
    [fused] = fuse([suspicion], [seen])
    assert (fused.scope, fused.regions, fused.status) == (Scope.REGIONAL, ("Tigray",), Status.CONFIRMED)
    assert fused.confirmed_at == seen.confirmed_at and fused.asns == (24757,)


def test_one_network_down_everywhere_is_that_networks_outage_not_a_national_one() -> None:
    # Optus down in every region: each region's series falls by Optus's share (below half where it dominates),
    # yet the other networks' own series keep answering, so the loss is Optus's
    sc = load_scenario(ROOT / "scenarios" / "au-2023-optus-outage.toml")
    au = sc.countries[0]
    big = tuple(replace(n, probes=n.probes * 10) if n.asn == 4804 else n for n in au.networks)
    sc = replace(sc, countries=(replace(au, networks=big),))
    found = signal_incidents(outside_signals(sc, Model(signals="present")))
    assert found and {(i.scope, i.asns) for i in found} == {(Scope.NETWORK, (4804,))}


def test_regions_that_fall_with_a_network_down_everywhere_are_its_footprint_not_a_regional_event() -> None:
    # Optus as it is, with sparse (noisy) region series: the regions where it carries most of the blocks fall
    # below half with it; its own country-wide series fell and the other networks' kept answering, so the
    # loss is still Optus's, not a regional one
    sc = load_scenario(ROOT / "scenarios" / "au-2023-optus-outage.toml")
    found = signal_incidents(outside_signals(sc, Model(signals="noisy")))
    assert found and {(i.scope, i.asns) for i in found} == {(Scope.NETWORK, (4804,))}
