"""Verdict provenance in the store: a stored row's judgment (verdict, kbps, deciding rule, rules version) and the
bookkeeping of one reclassify pass, the same for every backend (each backend only reads rows and writes what
`ReclassifyPass` sorts out)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple


class StoredVerdict(NamedTuple):
    """A stored row's judgment of its measurement: what `reclassify` compares and rewrites."""

    verdict: str
    kbps: float | None
    rule: str | None = None  # None: stored before provenance was kept
    rules_version: str | None = None


def reclassified(old: StoredVerdict, result: tuple[Any, ...]) -> StoredVerdict:
    """A row's judgment after reclassification, from what the classify callable gave: a StoredVerdict, or
    (verdict, kbps) alone, which leaves the row's rule and rules version as they were."""
    if isinstance(result, StoredVerdict):
        return result
    if len(result) == 2:
        return old._replace(verdict=result[0], kbps=result[1])
    return StoredVerdict(*result)


# A stored document (JSON bytes) -> its judgment as ingest would give it today: a StoredVerdict (with the rule
# and rules version), or (verdict, kbps) alone, which leaves the row's provenance as it was
Classify = Callable[[bytes], tuple[Any, ...]]

# called by reclassify for every row: its uid, its judgment as stored, as reclassified
ReclassifyObserver = Callable[[str, StoredVerdict, StoredVerdict], None]


class ReclassifyPass:
    """The bookkeeping of one reclassify pass, the same for every backend: each row judged again, and sorted
    into rows to rewrite one by one (verdict, kbps or rule changed) and rows that only need the pass's rules
    version, stamped in one statement at the end (`stamp_version`): after any rules change every row has a new
    version, and an update kept per row would hold the whole store in memory."""

    def __init__(self, classify: Classify, observe: ReclassifyObserver | None) -> None:
        self._classify = classify
        self._observe = observe
        self.changed = 0  # rows whose verdict or kbps changed
        self._restamp = 0  # rows whose rules version alone changed
        self._versions: set[str | None] = set()  # the versions the pass gave, over every row

    def judge(self, uid: str, stored: Sequence[Any], raw: bytes) -> StoredVerdict | None:
        """The row's new judgment when it must be rewritten by itself, else None. `stored`: verdict, kbps,
        rule, rules version."""
        old = StoredVerdict(*stored)
        new = reclassified(old, self._classify(raw))
        if self._observe is not None:
            self._observe(uid, old, new)
        self._versions.add(new.rules_version)
        if new == old:
            return None
        if new[:2] != old[:2]:
            self.changed += 1
        if new[:3] == old[:3]:
            self._restamp += 1
            return None
        return new

    @property
    def restamps(self) -> bool:
        """Whether rows wait for `stamp_version` (on every row stored before the pass began whose version
        differs: every row was judged, and judged to that version)."""
        return self._restamp > 0

    @property
    def stamp_version(self) -> str | None:
        if len(self._versions) != 1:
            raise ValueError(f"one reclassify pass, one rules version: classify gave {len(self._versions)}")
        return next(iter(self._versions))
