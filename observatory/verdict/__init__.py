"""Per-measurement verdicts, computed from the raw observations of a measurement and its control.

`classify(measurement)` returns a `Classification`: the verdict (ok, down, unknown or a technique), the
throughput when the measurement timed a transfer (`throughput.py`: our `x_download`, else OONI's own timings)
and where that figure came from, the rule that decided and the version of the rules (`RULES_VERSION`, a digest
of the code and data that decide: `version.py`). Rules are data (`rules.WEB_RULES`,
ordered, first match wins); block pages are data (`data/blockpages.toml`). OONI's own summary keys
(`blocking`, `accessible`, `dns_consistency`) are never read: `ooni.ooni_blocking` recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from observatory.errors import ParseError
from observatory.measurement import Measurement, parse_measurement
from observatory.verdict.facts import WebFacts
from observatory.verdict.fast import plainly_ok
from observatory.verdict.obsweb import OBS_KEY, obs_verdict
from observatory.verdict.platform import PLATFORM_TESTS, platform_verdict
from observatory.verdict.rules import (
    RULES_BY_ID,
    THROTTLING_FACTOR,
    WEB_RULES,
    Context,
    Rule,
    blockpage_id,
    first_match,
)
from observatory.verdict.throughput import NONE, throughput
from observatory.verdict.version import RULES_VERSION

__all__ = ["Classification", "classify", "classify_raw", "WEB_RULES", "Rule", "RULES_VERSION"]

WEB_TESTS = frozenset({"web_connectivity"})
OK_RULE = RULES_BY_ID["web.ok"]


@dataclass(frozen=True, slots=True)
class Classification:
    verdict: str
    kbps: float | None = None
    rule: str = ""
    reason: str = ""
    blockpage: str | None = None  # the fingerprint id, for http_blockpage
    kbps_source: str | None = None  # where `kbps` was read from (throughput.KbpsSource), None without kbps
    rules_version: str = RULES_VERSION  # the rules that decided: stored beside `rule`


def classify(m: Measurement, baseline_kbps: float | None = None) -> Classification:
    """The verdict of one measurement. Never raises on odd test keys: what cannot be judged is `unknown`.

    `baseline_kbps`: the network's recent throughput for this target, when the caller knows it; a download
    10x below it is throttling even when the control's own download is missing.
    """
    obs = m.doc.get(OBS_KEY)
    if isinstance(obs, dict):  # rebuilt from OONI's observation rows: judged from the rows, without a control
        ov = obs_verdict(m.test_name, m.test_version, obs)
        return Classification(verdict=ov.verdict.value, rule=ov.rule, reason=ov.reason)
    tk = m.test_keys
    if m.test_name in WEB_TESTS:
        if plainly_ok(tk, m.input, baseline_kbps, THROTTLING_FACTOR):
            tp = throughput(m.test_name, tk)
            return Classification(verdict="ok", kbps=tp.kbps, rule=OK_RULE.id, reason=OK_RULE.reason,
                                  kbps_source=tp.source)
        facts = WebFacts(tk, m.input)
        ctx = Context(facts=facts, baseline_kbps=baseline_kbps, probe_cc=m.probe_cc)
        rule = first_match(WEB_RULES, ctx)
        page = blockpage_id(ctx) if rule.id == "http.blockpage" else None
        # a throughput figure describes the platform only when the platform answered: a block page or a
        # half-finished download measured the censor, and would read as throttling in the platform's series
        tp = throughput(m.test_name, tk) if rule.verdict.value in ("ok", "throttling") else NONE
        return Classification(verdict=rule.verdict.value, kbps=tp.kbps, rule=rule.id, reason=rule.reason,
                              blockpage=page, kbps_source=tp.source)
    if m.test_name in PLATFORM_TESTS:
        pv = platform_verdict(m.test_name, tk, m.test_version)
        # the IM tests time their own transfers; as for web pages, only a working service's speed describes it
        tp = throughput(m.test_name, tk) if pv.verdict.value == "ok" else NONE
        return Classification(verdict=pv.verdict.value, rule=pv.rule, reason=pv.reason, kbps=tp.kbps,
                              kbps_source=tp.source)
    return Classification(verdict="unknown", rule="test.not_analysed",
                          reason=f"{m.test_name} is a test we do not analyse")


UNPARSEABLE_RULE = "doc.unparseable"


def classify_document(raw: bytes) -> Classification:
    """A stored raw document's classification. One that no longer parses is `unknown` (rule
    `doc.unparseable`) rather than stopping a pass over the whole store."""
    try:
        m = parse_measurement(raw)
    except ParseError as exc:
        return Classification(verdict="unknown", rule=UNPARSEABLE_RULE, reason=f"no longer parses: {exc.reason}")
    return classify(m)


def classify_raw(raw: bytes) -> tuple[str, float | None]:
    """A stored raw document -> (verdict, kbps) (see classify_document)."""
    c = classify_document(raw)
    return c.verdict, c.kbps
