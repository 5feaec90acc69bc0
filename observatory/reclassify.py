"""Reclassification with provenance: every stored verdict judged again by the current rules, and what changed
told by rule.

Each stored row carries the id of the rule that decided its verdict and the rules version (verdict.RULES_VERSION)
it was decided under; `reclassify(store)` re-runs the rules over the stored documents, rewrites what changed and
returns a `ReclassifyReport`: per (old rule -> new rule, old verdict -> new verdict) how many rows moved, per
(old verdict -> new verdict) the same summed, and how many rows had been decided by another rules version (or
before provenance was kept). Counting happens here, outside the store: the store only hands each row's old and
new judgment to `Tally.observe`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from observatory.store.base import Store, StoredVerdict
from observatory.verdict import RULES_VERSION, classify_document

EXAMPLES = 3  # uids kept per transition, to look at what a changed rule now decides
UNRECORDED = "(none)"  # how a rule or rules version that was never stored is shown in text


def classify_stored(raw: bytes) -> StoredVerdict:
    """A stored document judged by the current rules, with the rule that decided and the rules version."""
    c = classify_document(raw)
    return StoredVerdict(c.verdict, c.kbps, c.rule, c.rules_version)


@dataclass(frozen=True, slots=True)
class Transition:
    """Rows that one rule decided before and another (or the same, with another verdict) decides now."""

    from_rule: str | None
    to_rule: str | None
    from_verdict: str
    to_verdict: str
    measurements: int
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReclassifyReport:
    rules_version: str  # the version every row carries now
    measurements: int  # rows judged again
    changed: int  # rows whose verdict or kbps changed (the store's count)
    by_rule: tuple[Transition, ...]  # rule or verdict changed; most rows first
    by_verdict: tuple[tuple[str, str, int], ...]  # (old verdict, new verdict, rows), verdict changed
    older_versions: tuple[tuple[str | None, int], ...]  # (stored rules version, rows) not the current one
    rule_recorded: int  # rows stored without a rule that now have one, their verdict unchanged

    @property
    def older(self) -> int:
        """Rows that had been decided by another rules version, or before versions were recorded."""
        return sum(n for _, n in self.older_versions)


@dataclass
class Tally:
    """Counts what reclassification did to each row (the store calls `observe` for every row)."""

    rules_version: str = RULES_VERSION
    measurements: int = 0
    rule_recorded: int = 0
    moves: Counter[tuple[str | None, str | None, str, str]] = field(default_factory=Counter)
    examples: dict[tuple[str | None, str | None, str, str], list[str]] = field(default_factory=dict)
    versions: Counter[str | None] = field(default_factory=Counter)

    def observe(self, uid: str, old: StoredVerdict, new: StoredVerdict) -> None:
        self.measurements += 1
        if old.rules_version != self.rules_version:
            self.versions[old.rules_version] += 1
        if old.verdict == new.verdict and old.rule == new.rule:
            return
        if old.rule is None and old.verdict == new.verdict:
            # a row from before provenance: its rule is now known, nothing it says has changed
            self.rule_recorded += 1
            return
        key = (old.rule, new.rule, old.verdict, new.verdict)
        self.moves[key] += 1
        seen = self.examples.setdefault(key, [])
        if len(seen) < EXAMPLES:
            seen.append(uid)

    def report(self, changed: int) -> ReclassifyReport:
        by_verdict: Counter[tuple[str, str]] = Counter()
        for (_, _, old_v, new_v), n in self.moves.items():
            if old_v != new_v:
                by_verdict[(old_v, new_v)] += n
        transitions = tuple(
            Transition(a, b, v, w, n, tuple(self.examples[(a, b, v, w)]))
            for (a, b, v, w), n in sorted(self.moves.items(), key=lambda kv: (-kv[1], _sortable(kv[0]))))
        return ReclassifyReport(
            rules_version=self.rules_version, measurements=self.measurements, changed=changed,
            by_rule=transitions,
            by_verdict=tuple((a, b, n) for (a, b), n in sorted(by_verdict.items(), key=lambda kv: (-kv[1], kv[0]))),
            # most rows first; rows from before versions were recorded after the others
            older_versions=tuple(sorted(self.versions.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))),
            rule_recorded=self.rule_recorded)


def _sortable(key: tuple[str | None, ...]) -> tuple[str, ...]:
    return tuple(k or "" for k in key)


def reclassify(store: Store, *, batch_size: int = 10_000) -> ReclassifyReport:
    """Every stored verdict judged again by the current rules; what changed, by rule."""
    tally = Tally()
    changed = store.reclassify(classify_stored, batch_size=batch_size, observe=tally.observe)
    return tally.report(changed)


# --- output -------------------------------------------------------------------------------------------------


def report_json(r: ReclassifyReport) -> dict[str, Any]:
    return {
        "changed": r.changed,
        "measurements": r.measurements,
        "rules_version": r.rules_version,
        "older_rules": r.older,
        "older_rules_versions": [{"rules_version": v, "measurements": n} for v, n in r.older_versions],
        "rule_recorded": r.rule_recorded,
        "by_rule": [{"from_rule": t.from_rule, "to_rule": t.to_rule, "from_verdict": t.from_verdict,
                     "to_verdict": t.to_verdict, "measurements": t.measurements, "examples": list(t.examples)}
                    for t in r.by_rule],
        "by_verdict": [{"from_verdict": a, "to_verdict": b, "measurements": n} for a, b, n in r.by_verdict],
    }


def report_lines(r: ReclassifyReport) -> list[str]:
    """The report as text: the first line as before provenance was kept, then the changes by rule."""
    lines = [f"reclassified: {r.changed} verdicts changed",
             f"{r.measurements} measurements judged by rules version {r.rules_version}"]
    if r.older_versions:
        versions = ", ".join(f"{v or 'before versions were recorded'}: {n}" for v, n in r.older_versions)
        lines.append(f"decided by an older rules version: {r.older} ({versions})")
    if r.rule_recorded:
        lines.append(f"rule recorded for the first time, verdict unchanged: {r.rule_recorded}")
    if r.by_rule:
        lines.append("by rule (old -> new):")
        width = max(len(str(t.measurements)) for t in r.by_rule)
        for t in r.by_rule:
            rules = f"{t.from_rule or UNRECORDED} -> {t.to_rule or UNRECORDED}"
            verdicts = t.from_verdict if t.from_verdict == t.to_verdict else f"{t.from_verdict} -> {t.to_verdict}"
            lines.append(f"  {t.measurements:>{width}}  {rules}  ({verdicts}; e.g. {', '.join(t.examples)})")
    if r.by_verdict:
        lines.append("by verdict (old -> new):")
        width = max(len(str(n)) for _, _, n in r.by_verdict)
        for a, b, n in r.by_verdict:
            lines.append(f"  {n:>{width}}  {a} -> {b}")
    return lines
