"""The verdict rules on small measurements in our format, one per technique (tests/verdict_cases.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from verdict_cases import EXPECTED, URL, case, envelope, ok_keys

from observatory.errors import ConfigError
from observatory.measurement import measurement_from_dict, parse_measurement
from observatory.verdict import WEB_RULES, Classification, classify, classify_raw
from observatory.verdict.blockpages import fingerprints, match_response, parse_fingerprints
from observatory.verdict.facts import WebFacts
from observatory.verdict.rules import RULES_BY_ID, Context, first_match
from observatory.vocab import Verdict

VERDICTS = {v.value for v in Verdict}


def _classify(tk: dict, **kw: object) -> Classification:
    return classify(measurement_from_dict(envelope(tk, url=tk["requests"][0]["request"]["url"]
                                                   if tk.get("requests") else URL)), **kw)  # type: ignore[arg-type]


def _full_rules(tk: dict, url: str) -> str:
    """The rule the ordered list picks, without the fast path."""
    return first_match(WEB_RULES, Context(facts=WebFacts(tk, url))).id


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_technique_signature_gets_its_verdict(name: str) -> None:
    tk = case(name)
    c = _classify(tk)
    assert (c.verdict, c.rule) == EXPECTED[name], c.reason
    assert c.reason == RULES_BY_ID[c.rule].reason


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_summary_keys_are_never_read(name: str) -> None:
    """OONI's `blocking`/`accessible`/`dns_consistency` are evidence only: lying values change nothing."""
    tk = case(name)
    honest = _classify(tk)
    for lie in ({"blocking": "dns", "accessible": False, "dns_consistency": "inconsistent"},
                {"blocking": False, "accessible": True, "dns_consistency": "consistent"}):
        assert _classify({**tk, **lie}) == honest


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fast_path_agrees_with_the_rule_list(name: str) -> None:
    tk = case(name)
    url = tk["requests"][0]["request"]["url"] if tk.get("requests") else URL
    assert _classify(tk).rule == _full_rules(tk, url)


def test_rule_ids_are_unique_and_the_list_ends_with_a_catch_all() -> None:
    ids = [r.id for r in WEB_RULES]
    assert len(ids) == len(set(ids))
    assert WEB_RULES[-1].verdict == Verdict.UNKNOWN
    assert all(r.reason and r.verdict.value in VERDICTS for r in WEB_RULES)


def test_every_web_rule_is_reachable_by_some_case() -> None:
    """Each rule that names a technique is exercised here or in the real-data tests."""
    covered = {rule for _, rule in EXPECTED.values()}
    real_only = {"dns.ghost", "redirect.dns", "redirect.tcp_reset", "redirect.tls", "web.no_observations"}
    unexercised = {r.id for r in WEB_RULES} - covered - real_only - {"web.undecided", "web.ok_download",
                                                                       "redirect.tcp_timeout", "tls.interference"}
    assert not unexercised


def test_kbps_comes_from_x_download() -> None:
    c = _classify(ok_keys(kbps=8000.0))
    assert c.kbps == pytest.approx(8000.0, rel=1e-3)
    tk = case("tcp_reset")
    assert _classify(tk).kbps is None


def test_throttling_against_a_baseline_when_the_control_has_no_download() -> None:
    tk = ok_keys(kbps=900.0)
    del tk["control"]["x_download"]
    assert _classify(tk).verdict == "ok"
    assert _classify(tk, baseline_kbps=20_000.0).verdict == "throttling"
    assert _classify(tk, baseline_kbps=5_000.0).verdict == "ok"  # 5.5x slower: not a collapse


def test_throttling_threshold_is_tenfold() -> None:
    assert _classify(ok_keys(kbps=4_100.0, control_kbps=40_000.0)).verdict == "ok"
    assert _classify(ok_keys(kbps=3_900.0, control_kbps=40_000.0)).verdict == "throttling"


def test_a_timed_out_but_progressing_download_still_measures_throughput() -> None:
    tk = ok_keys(control_kbps=40_000.0)
    tk["x_download"] = {"url": URL, "bytes": 16_000, "seconds": 1.0, "failure": "generic_timeout_error"}
    c = _classify(tk)
    assert c.kbps == pytest.approx(128.0)
    assert c.verdict == "throttling"


def test_private_answers_the_control_also_got_are_not_tampering() -> None:
    """Sites (and our lab) may publish private addresses: only the control can tell a lie from a fact."""
    tk = ok_keys()
    for q in tk["queries"]:
        q["answers"] = [{"answer_type": "A", "ipv4": "10.1.2.3"}]
    tk["tcp_connect"][0]["ip"] = "10.1.2.3"
    tk["tls_handshakes"][0]["address"] = "10.1.2.3:443"
    tk["control"]["dns"]["addrs"] = ["10.1.2.3"]
    assert _classify(tk).verdict == "ok"


def test_inconsistent_answers_validated_by_tls_are_a_cdn_not_tampering() -> None:
    tk = ok_keys()
    for q in tk["queries"]:
        q["answers"] = [{"answer_type": "A", "ipv4": "198.18.9.9"}]
    tk["tcp_connect"][0]["ip"] = "198.18.9.9"
    tk["tls_handshakes"][0]["address"] = "198.18.9.9:443"
    c = _classify(tk)
    assert (c.verdict, c.rule) == ("ok", "web.ok")


def test_blockpage_verdict_names_the_fingerprint() -> None:
    c = _classify(case("blockpage_ir"))
    assert c.blockpage == "ir.iframe_10_10_34"


def test_tests_we_do_not_analyse_are_unknown() -> None:
    doc = envelope({"whatever": 1}, test_name="ndt")
    c = classify(measurement_from_dict(doc))
    assert (c.verdict, c.rule) == ("unknown", "test.not_analysed")


def test_classify_raw_round_trips_the_stored_document() -> None:
    doc = envelope(case("tcp_reset"))
    assert classify_raw(msgspec.json.encode(doc)) == ("tcp_reset", None)
    assert classify_raw(b"{not json") == ("unknown", None)


def test_classify_never_reads_more_than_the_document(tmp_path: Path) -> None:
    """classify(m) on a parsed line equals classify on the dict: no hidden state between calls."""
    docs = [envelope(case(n)) for n in sorted(EXPECTED)]
    first = [classify(parse_measurement(json.dumps(d))) for d in docs]
    again = [classify(parse_measurement(json.dumps(d))) for d in reversed(docs)]
    assert first == list(reversed(again))


# --- fingerprints as data ------------------------------------------------------------------------------


def test_shipped_fingerprints_cover_the_national_pages_we_promise() -> None:
    fps = fingerprints()
    countries = {c for fp in fps for c in fp.countries}
    assert {"PK", "IR", "TR", "RU", "ID", "IN"} <= countries
    assert any(fp.false_positive for fp in fps) and any(not fp.countries for fp in fps)
    assert len({fp.id for fp in fps}) == len(fps)


@pytest.mark.parametrize(("body", "headers", "expected"), [
    ('<iframe src="http://10.10.34.35" style', None, "ir.iframe_10_10_34"),
    ("<title>Telekomünikasyon İletişim Başkanlığı</title>", None, "tr.tib_title"),
    ("Доступ к сайту ограничен в соответствии с Федеральными законами", None, "ru.federal_law"),
    ("The page you have requested has been blocked, because", None, "in.dot_blocked"),
    ("", {"location": "http://internet-positif.org/?u=x"}, "id.internet_positif_location"),
    ("", {"Location": ["http://warning.rt.ru/x"]}, "ru.rostelecom_warning"),
    ("<TITLE>Just a moment...</TITLE>", None, None),  # case matters: not Cloudflare's page
    ("<title>Just a moment...</title>", None, "fp.cloudflare_challenge"),
    ("an ordinary page", {"Server": "nginx", "Location": "https://example.com/"}, None),
    ({"format": "base64", "data": "U3VyZiBTYWZlbHkh"}, None, "pk.pta.surf_safely"),  # "Surf Safely!"
])
def test_fingerprint_matching(body: object, headers: dict | None, expected: str | None) -> None:
    fp = match_response(body, headers)
    assert (fp.id if fp else None) == expected


@pytest.mark.parametrize(("text", "problem"), [
    ('[[blockpage]]\nid = "a"\nlocation = "body"\npattern_type = "regexp"\npattern = "("\n', "bad regexp"),
    ('[[blockpage]]\nid = "a"\nlocation = "footer"\npattern_type = "contains"\npattern = "x"\n', "location"),
    ('[[blockpage]]\nid = "a"\nlocation = "header"\npattern_type = "contains"\npattern = "x"\n', "needs `header`"),
    ('[[blockpage]]\nid = "a"\nlocation = "body"\npattern_type = "contains"\npattern = "x"\n'
     '[[blockpage]]\nid = "a"\nlocation = "body"\npattern_type = "contains"\npattern = "y"\n', "used twice"),
    ('[[blockpage]]\nid = "a"\nlocation = "body"\npattern_type = "contains"\npattern = "x"\ncountries = ["PAK"]\n',
     "alpha-2"),
    ("[[blockpage]\n", "blockpages.toml"),
])
def test_bad_fingerprint_files_say_what_and_where(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(")) as info:
        parse_fingerprints(text)
    assert "blockpages.toml" in str(info.value)


def test_fingerprints_with_their_own_flags_combine_with_others() -> None:
    fps = parse_fingerprints(
        '[[blockpage]]\nid = "a"\nlocation = "body"\npattern_type = "regexp"\npattern = "(?i)blocked here"\n'
        '[[blockpage]]\nid = "b"\nlocation = "body"\npattern_type = "prefix"\npattern = "STOP"\n')
    assert match_response("it is BLOCKED HERE", None, fps).id == "a"  # type: ignore[union-attr]
    assert match_response("STOP now", None, fps).id == "b"  # type: ignore[union-attr]
    assert match_response("do not STOP", None, fps) is None


def _first_by_trying_each(text: str) -> str | None:
    """What the screened matcher must return: the first body fingerprint, in priority order, that matches."""
    return next((fp.id for fp in fingerprints() if fp.location == "body" and fp.matches(text, None)), None)


_FRAGMENTS = sorted({piece for fp in fingerprints() if fp.location == "body"
                     for piece in (fp.pattern, fp.pattern[: len(fp.pattern) // 2], fp.pattern[len(fp.pattern) // 2:])}
                    | {"This site is not accessible in Pakistan", "<title>x 451 Unavailable For Legal Reasons",
                       "Not available in your region", "</title>", "<html><body>", " ", "é", "Доступ"})


@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=30)), max_size=12))
@example(["administration measure has been taken for this website is not accessible in Pakistan"])  # overlapping
@settings(max_examples=400, deadline=None)
def test_one_pass_screen_finds_what_trying_each_fingerprint_finds(parts: list[str]) -> None:
    text = "".join(parts)
    fp = match_response(text, None)
    assert (fp.id if fp else None) == _first_by_trying_each(text)


def test_deep_copies_do_not_share_state() -> None:
    a = case("ok")
    b = copy.deepcopy(a)
    b["queries"][0]["answers"] = []
    assert a["queries"][0]["answers"]


@pytest.mark.parametrize(("pattern", "literals"), [
    (r'iframe src="http://10\.10\.34\.3[4-6]', ('iframe src="http://10.10.34.3',)),
    ("[Tt]his (?:web)?site is not accessible[^<]{0,80}(?:Pakistan|PTA)", ("site is not accessible",)),
    (r"<title>(Attention Required! \| Cloudflare|Just a moment\.\.\.)</title>",
     ("Attention Required! | Cloudflare", "Just a moment...")),  # longer than "</title>", and rarer
    ("abcd?e", ("abc",)),  # d is optional
    ("abcd|efgh", ("abcd", "efgh")),  # a top-level alternative: one of them
    ("ab|cd", None),  # too short to be worth a test
    (r"x\d+yy", None),
    ("(?i)blocked here", None),  # the text's case is not the literal's
    ("a(?i:bcdef)g", None),
])
def test_required_literals_are_certain(pattern: str, literals: tuple[str, ...] | None) -> None:
    import re

    from observatory.verdict.blockpages import required_literals

    got = required_literals(pattern)
    assert got == literals
    sample = ("x abcde abce abcd efgh This site is not accessible in Pakistan <iframe src=\"http://10.10.34.35\"> "
              "<title>Just a moment...</title> <title>Attention Required! | Cloudflare</title> aBCDEFg")
    matches = [m.group(0) for m in re.finditer(pattern, sample)]
    assert matches or got is None, "the sample should exercise the pattern"
    if got is not None:  # every match contains one of them
        assert all(any(lit in m for lit in got) for m in matches)


def test_every_rule_is_documented() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "verdicts.md").read_text(encoding="utf-8")
    missing = [r.id for r in WEB_RULES if f"`{r.id}`" not in doc]
    assert not missing, f"add these rules to docs/verdicts.md: {missing}"
