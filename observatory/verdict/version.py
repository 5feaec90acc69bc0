"""RULES_VERSION: which version of the verdict rules decided a stored verdict.

The version is a digest of everything that decides a verdict: the source of every module of this package
(the rule tables, their conditions, the facts they read, the fast path, the platform and observation-row
rules, throughput), the block-page fingerprints (`data/blockpages.toml`) and the failure strings the rules
compare with (`failure.py`). Derived rather than written by hand, so a changed rule cannot be shipped under
the old version: any edit to these files gives a new one. An edit that changes no verdict (a comment) gives a
new version too; `observatory reclassify` then finds nothing to change but re-stamps the rows, which is the
safe side of the mistake.

Only this module is left out of the digest (it computes it, and decides nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources

# the files outside this package that decide verdicts, relative to the observatory package
_DECIDING_FILES = ("data/blockpages.toml", "failure.py")
_THIS_FILE = "version.py"
DIGEST_CHARS = 12  # hex digits kept: enough to tell versions apart, short enough to read in a report


def rules_version(sources: Iterable[tuple[str, bytes]]) -> str:
    """The version of a set of (name, content) files: sha256 over the names and contents, in name order.
    Line endings are normalised so a checkout with CRLF gives the same version."""
    h = hashlib.sha256()
    for name, content in sorted(sources):
        body = content.replace(b"\r\n", b"\n")
        h.update(name.encode() + b"\0" + str(len(body)).encode() + b"\0" + body)
    return h.hexdigest()[:DIGEST_CHARS]


def deciding_sources() -> list[tuple[str, bytes]]:
    """(name, content) of every file the version covers, read from the installed package."""
    out: list[tuple[str, bytes]] = []
    here = resources.files(__package__ or "observatory.verdict")
    for item in here.iterdir():
        if item.name.endswith(".py") and item.name != _THIS_FILE:
            out.append(("verdict/" + item.name, item.read_bytes()))
    for name in _DECIDING_FILES:
        out.append((name, resources.files("observatory").joinpath(name).read_bytes()))
    return out


RULES_VERSION: str = rules_version(deciding_sources())
