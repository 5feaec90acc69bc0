"""A COST-style economic estimate of a disruption, as a range with its method, inputs and assumptions.

Method (after NetBlocks' Cost of Shutdown Tool and Brookings' "Internet shutdowns cost countries $2.4 billion
last year", 2016): the economy's output per hour (GDP / 8766 h), times the share of it that depends on the
internet, times the share of that internet economy the disruption touches (all of it when connectivity is lost;
the affected platforms' share when they are blocked; a fraction of that when they are only slowed), times the
share of the country affected (scope), times the duration. Every factor is uncertain, so each is a low-high
range and the result is a range: the honest output is an order of magnitude, not a figure to the dollar.

GDP and population: World Bank WDI, CC BY 4.0 (observatory/data/worldbank.csv).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources

from observatory.catalog import CONTROL
from observatory.incident import Incident
from observatory.report.countries import country, country_name
from observatory.report.facts import duration_text, networks_affected, networks_measured
from observatory.vocab import IncidentKind, Scope

HOURS_PER_YEAR = 8766.0
ATTRIBUTION = "World Bank WDI, CC BY 4.0"


@dataclass(frozen=True, slots=True)
class Range:
    low: float
    high: float

    def __mul__(self, other: Range) -> Range:
        return Range(self.low * other.low, self.high * other.high)


@dataclass(frozen=True, slots=True, kw_only=True)
class CostAssumptions:
    # the internet economy's share of GDP (Brookings 2016 used 1-5% for the economies it studied; higher in
    # the most digital economies)
    internet_share: Range = Range(0.02, 0.06)
    # each platform's share of the internet economy: commerce, advertising and work done over it. Assumptions,
    # not measurements; messaging apps weigh most where business runs on them.
    platform_share: dict[str, Range] = field(default_factory=lambda: {
        "facebook": Range(0.05, 0.12), "whatsapp": Range(0.05, 0.15), "youtube": Range(0.03, 0.08),
        "instagram": Range(0.02, 0.07), "twitter": Range(0.01, 0.04), "telegram": Range(0.01, 0.05),
        "tiktok": Range(0.01, 0.05), "signal": Range(0.001, 0.01),
    })
    unknown_platform_share: Range = Range(0.005, 0.03)
    platforms_cap: float = 0.6  # blocking many platforms never stops the whole internet economy
    throttled_loss: Range = Range(0.3, 0.7)  # a slowed platform still does part of its work
    # without counts of measured regions/networks, the share of the country affected is a wide guess
    regional_share: Range = Range(0.1, 0.5)
    network_share: Range = Range(0.05, 0.4)


DEFAULT_ASSUMPTIONS = CostAssumptions()


@dataclass(frozen=True, slots=True, kw_only=True)
class Economy:
    alpha3: str
    name: str
    gdp_usd: float
    gdp_year: int
    population: int
    population_year: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CostEstimate:
    incident_id: str
    usd: Range
    hours: float
    ongoing: bool
    economy: Economy
    factors: dict[str, Range]  # the named factors multiplied together
    method: str
    assumptions: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "incident": self.incident_id, "usd_low": round_sig(self.usd.low), "usd_high": round_sig(self.usd.high),
            "hours": round(self.hours, 2), "ongoing": self.ongoing,
            "inputs": {"country": self.economy.name, "gdp_usd": self.economy.gdp_usd,
                       "gdp_year": self.economy.gdp_year, "population": self.economy.population,
                       "population_year": self.economy.population_year, "source": ATTRIBUTION},
            "factors": {k: [v.low, v.high] for k, v in self.factors.items()},
            "method": self.method, "assumptions": list(self.assumptions),
        }


@cache
def economies() -> dict[str, Economy]:
    text = resources.files("observatory").joinpath("data/worldbank.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    return {r["alpha3"]: Economy(alpha3=r["alpha3"], name=r["name"], gdp_usd=float(r["gdp_usd"]),
                                 gdp_year=int(r["gdp_year"]), population=int(r["population"]),
                                 population_year=int(r["population_year"])) for r in rows}


def economy_of(cc: str | None) -> Economy | None:
    c = country(cc)
    return economies().get(c.alpha3) if c else None


def round_sig(x: float, digits: int = 2) -> float:
    if x == 0:
        return 0.0
    from math import floor, log10

    return round(x, -int(floor(log10(abs(x)))) + digits - 1)


def money(x: float) -> str:
    """'US$1.2 million', 'US$340,000', 'US$2.1 billion' (two significant figures)."""
    x = round_sig(x)
    for size, word in ((1e9, "billion"), (1e6, "million")):
        if x >= size:
            return f"US${x / size:.3g} {word}"
    return f"US${x:,.0f}"


def _economy_share(inc: Incident, a: CostAssumptions) -> tuple[Range, str]:
    if inc.kind == IncidentKind.CONNECTIVITY_LOSS:
        return Range(1.0, 1.0), "all of the internet economy (connectivity lost)"
    shares = [a.platform_share.get(p, a.unknown_platform_share) for p in inc.platforms if p != CONTROL]
    total = Range(min(a.platforms_cap, sum(s.low for s in shares)), min(a.platforms_cap, sum(s.high for s in shares)))
    what = "the affected platforms' share of the internet economy"
    if inc.kind == IncidentKind.THROTTLING:
        return total * a.throttled_loss, what + ", reduced because throttled platforms still partly work"
    return total, what


def _scope_share(inc: Incident, a: CostAssumptions, measured: int | None,
                 regions: int | None = None) -> tuple[Range, str]:
    if inc.scope == Scope.NATIONAL:
        return Range(1.0, 1.0), "national: the whole country"
    if inc.scope == Scope.REGIONAL:
        n = max(regions, len(inc.regions)) if regions else None  # counted by the caller from the series
        if n and inc.regions:
            s = min(1.0, len(inc.regions) / n)
            return Range(s * 0.5, s), f"regional: {len(inc.regions)} of {n} regions measured (population unknown)"
        return a.regional_share, "regional: share of the country assumed"
    m = networks_measured(inc, measured)
    if m:
        s = min(1.0, networks_affected(inc) / m)
        # networks differ in size: one of six networks may carry half the users or a twentieth
        return Range(s * 0.3, min(1.0, s * 2)), f"network: {networks_affected(inc)} of {m} networks measured"
    return a.network_share, "network: share of users assumed"


def estimate_cost(inc: Incident, *, now: datetime | None = None, networks_measured_count: int | None = None,
                  regions_measured_count: int | None = None,
                  assumptions: CostAssumptions = DEFAULT_ASSUMPTIONS) -> CostEstimate | None:
    """The estimate, or None when there is nothing to estimate (worldwide outage, no data for the country, an
    ongoing incident without `now`)."""
    econ = economy_of(inc.country)
    if econ is None or inc.kind == IncidentKind.PLATFORM_OUTAGE:
        return None
    end = inc.end or now
    if end is None:
        return None
    hours = max(0.0, (end - inc.start).total_seconds() / 3600)
    hourly = econ.gdp_usd / HOURS_PER_YEAR
    econ_share, econ_note = _economy_share(inc, assumptions)
    scope_share, scope_note = _scope_share(inc, assumptions, networks_measured_count, regions_measured_count)
    factors = {"internet_share_of_gdp": assumptions.internet_share, "share_of_internet_economy": econ_share,
               "share_of_country": scope_share}
    usd = Range(hourly * hours, hourly * hours)
    for f in factors.values():
        usd = usd * f
    method = ("cost = GDP / 8766 h x hours x internet share of GDP x share of the internet economy affected x "
              "share of the country affected")
    notes = (
        f"internet economy: {assumptions.internet_share.low:.0%}-{assumptions.internet_share.high:.0%} of GDP",
        f"economy affected: {econ_share.low:.1%}-{econ_share.high:.1%}, {econ_note}",
        f"scope: {scope_share.low:.0%}-{scope_share.high:.0%}, {scope_note}",
        "direct output lost during the disruption only; lost trust, investment and work moved elsewhere not counted",
        *(["ongoing: duration counted up to the time of this report"] if inc.end is None else []),
    )
    return CostEstimate(incident_id=inc.id, usd=usd, hours=hours, ongoing=inc.end is None, economy=econ,
                        factors=factors, method=method, assumptions=notes)


def cost_text(c: CostEstimate) -> str:
    e = c.economy
    per_capita = e.gdp_usd / e.population if e.population else 0
    return "\n".join([
        f"Estimated cost: {money(c.usd.low)} to {money(c.usd.high)} over {duration_text(c.hours * 3600)}"
        + (" so far" if c.ongoing else "") + ".",
        f"Method: {c.method}.",
        f"Inputs: {country_name_of(e)} GDP {money(e.gdp_usd)} ({e.gdp_year}), population {e.population:,} "
        f"({e.population_year}), GDP per person US${per_capita:,.0f}; source: {ATTRIBUTION}.",
        "Assumptions: " + "; ".join(c.assumptions) + ".",
    ])


def country_name_of(e: Economy) -> str:
    for cc, c in _alpha3_index().items():
        if c == e.alpha3:
            return country_name(cc)
    return e.name


@cache
def _alpha3_index() -> dict[str, str]:
    from observatory.report.countries import countries

    return {cc: c.alpha3 for cc, c in countries().items()}
