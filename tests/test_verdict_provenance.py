"""Verdict provenance (issue #23): the rules version is derived from what decides verdicts, so a changed rule
cannot keep the old version; reclassify's tally counts what changed by rule."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import observatory
from observatory.reclassify import Tally, report_json, report_lines
from observatory.store.base import StoredVerdict
from observatory.verdict import RULES_VERSION, classify
from observatory.verdict.version import deciding_sources, rules_version

PACKAGE = Path(observatory.__file__).parent


def _edited(sources: list[tuple[str, bytes]], name: str, old: bytes, new: bytes) -> list[tuple[str, bytes]]:
    out = []
    for n, body in sources:
        if n == name:
            assert old in body, f"{old!r} not in {name}"
            body = body.replace(old, new)
        out.append((n, body))
    return out


def test_the_rules_version_is_the_digest_of_every_file_that_decides() -> None:
    sources = deciding_sources()
    names = {n for n, _ in sources}
    on_disk = {f"verdict/{p.name}" for p in (PACKAGE / "verdict").glob("*.py")} - {"verdict/version.py"}
    assert on_disk <= names and {"data/blockpages.toml", "failure.py"} <= names
    assert RULES_VERSION == rules_version(sources) and classify.__module__ == "observatory.verdict"
    # a changed rule, a changed fingerprint, a changed failure string: each a new version
    for name, old, new in (("verdict/rules.py", b"THROTTLING_FACTOR = 10.0", b"THROTTLING_FACTOR = 8.0"),
                           ("verdict/rules.py", b'Rule("tcp.reset"', b'Rule("tcp.resets"'),
                           ("data/blockpages.toml", b"[[", b"[[\n"),
                           ("failure.py", b"connection_reset", b"connection_was_reset")):
        assert rules_version(_edited(sources, name, old, new)) != RULES_VERSION, (name, old)
    # the same files checked out with CRLF line endings are the same rules
    assert rules_version([(n, b.replace(b"\n", b"\r\n")) for n, b in sources]) == RULES_VERSION


def test_a_package_whose_rule_changed_reports_another_version(tmp_path: Path) -> None:
    """Derived when the package is imported, from its own files: nobody has to remember to bump it."""
    copy = tmp_path / "observatory"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    rules = copy / "verdict" / "rules.py"
    rules.write_text(rules.read_text().replace("THROTTLING_FACTOR = 10.0", "THROTTLING_FACTOR = 8.0"))
    out = subprocess.run([sys.executable, "-c", "from observatory.verdict.version import RULES_VERSION as v; print(v)"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) == len(RULES_VERSION) and out.stdout.strip() != RULES_VERSION


def test_the_tally_tells_rule_changes_from_first_recorded_rules_and_older_versions() -> None:
    t = Tally(rules_version="new")
    t.observe("a", StoredVerdict("tcp_blackhole", None, "tcp.timeout", "old"),
              StoredVerdict("tcp_reset", None, "tcp.reset", "new"))
    t.observe("b", StoredVerdict("dns_tampering", None, "dns.nxdomain", "old"),  # same verdict, another rule
              StoredVerdict("dns_tampering", None, "dns.bogon", "new"))
    t.observe("c", StoredVerdict("ok", 1.0), StoredVerdict("ok", 1.0, "web.ok", "new"))  # stored before rules
    t.observe("d", StoredVerdict("unknown", None), StoredVerdict("down", None, "site.down", "new"))
    t.observe("e", StoredVerdict("ok", 1.0, "web.ok", "new"), StoredVerdict("ok", 1.0, "web.ok", "new"))
    r = t.report(changed=2)
    assert (r.measurements, r.changed, r.rule_recorded, r.older) == (5, 2, 1, 4)
    assert r.older_versions == (("old", 2), (None, 2))
    assert [(x.from_rule, x.to_rule, x.from_verdict, x.to_verdict, x.examples) for x in r.by_rule] == [
        (None, "site.down", "unknown", "down", ("d",)),
        ("dns.nxdomain", "dns.bogon", "dns_tampering", "dns_tampering", ("b",)),
        ("tcp.timeout", "tcp.reset", "tcp_blackhole", "tcp_reset", ("a",))]
    assert r.by_verdict == (("tcp_blackhole", "tcp_reset", 1), ("unknown", "down", 1))
    assert report_json(r)["older_rules_versions"] == [{"rules_version": "old", "measurements": 2},
                                                      {"rules_version": None, "measurements": 2}]
    text = "\n".join(report_lines(r))
    assert text.startswith("reclassified: 2 verdicts changed\n")
    assert "  1  tcp.timeout -> tcp.reset  (tcp_blackhole -> tcp_reset; e.g. a)" in text
    assert "  1  dns.nxdomain -> dns.bogon  (dns_tampering; e.g. b)" in text
    assert "decided by an older rules version: 4 (old: 2, before versions were recorded: 2)" in text


def test_a_pass_stamps_its_one_rules_version_and_rewrites_only_real_changes_row_by_row() -> None:
    from observatory.store.base import ReclassifyPass

    results = iter([StoredVerdict("ok", 1.0, "web.ok", "new"), StoredVerdict("down", None, "site.down", "new")])
    p = ReclassifyPass(lambda raw: next(results), None)
    assert p.judge("a", ("ok", 1.0, "web.ok", "old"), b"{}") is None  # the version alone: stamped at the end
    assert p.judge("b", ("ok", 1.0, "web.ok", "old"), b"{}") == ("down", None, "site.down", "new")
    assert (p.changed, p.restamps, p.stamp_version) == (1, True, "new")
    mixed = iter([StoredVerdict("ok", 1.0, "web.ok", "v1"), StoredVerdict("ok", 1.0, "web.ok", "v2")])
    p = ReclassifyPass(lambda raw: next(mixed), None)
    for uid in "ab":
        p.judge(uid, ("ok", 1.0, "web.ok", "v0"), b"{}")
    with pytest.raises(ValueError, match="one rules version"):
        _ = p.stamp_version
