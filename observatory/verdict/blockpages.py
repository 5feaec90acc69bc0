"""Block-page fingerprints (data/blockpages.toml): load them once, match HTTP responses against them.

A fingerprint says where to look (the body, or one header), how (contains, prefix, regexp) and what for.
`match_response` returns the first fingerprint that matches, censorship pages before look-alikes, so a
caller can tell "a national block page" from "a Cloudflare CAPTCHA" (`false_positive=True`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from observatory.errors import ConfigError

LOCATIONS = ("body", "header")
# Block pages are small (the national ones are a few KiB); a page of 128 KiB is the real site. Looking at
# the head of the body bounds the cost on big pages without missing a censor's page.
BODY_WINDOW = 32 * 1024
PATTERN_TYPES = ("contains", "prefix", "regexp")
SCOPES = ("nat", "isp", "inst", "prod", "fp")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fingerprint:
    id: str
    location: str  # body | header
    pattern_type: str  # contains | prefix | regexp
    pattern: str
    header: str | None = None  # lowercase header name when location == "header"
    countries: tuple[str, ...] = ()
    scope: str = "prod"
    false_positive: bool = False
    source: str = ""
    _regex: re.Pattern[str] | None = None

    def matches_text(self, text: str) -> bool:
        if self.pattern_type == "contains":
            return self.pattern in text
        if self.pattern_type == "prefix":
            return text.startswith(self.pattern)
        assert self._regex is not None
        return self._regex.search(text) is not None

    def matches(self, body: str | None, headers: Mapping[str, Any] | None) -> bool:
        if self.location == "body":
            return bool(body) and self.matches_text(body)  # type: ignore[arg-type]
        if not headers:
            return False
        for name, value in headers.items():
            if isinstance(name, str) and name.lower() == self.header:
                values = value if isinstance(value, list) else [value]
                return any(isinstance(v, str) and self.matches_text(v) for v in values)
        return False

    def expected_in(self, cc: str) -> bool:
        """Whether this page is evidence of censorship for a probe in `cc` (OONI's `is_confirmed` idea)."""
        return not self.false_positive and (not self.countries or cc in self.countries or self.scope in ("nat", "isp"))


def _fingerprint(entry: dict[str, Any], where: str) -> Fingerprint:
    def need(key: str, choices: tuple[str, ...] | None = None) -> str:
        value = entry.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: `{key}` must be a non-empty string")
        if choices and value not in choices:
            raise ConfigError(f"{where}: `{key}` is {value!r}, expected one of {', '.join(choices)}")
        return value

    fid = need("id")
    location = need("location", LOCATIONS)
    pattern_type = need("pattern_type", PATTERN_TYPES)
    pattern = need("pattern")
    header = entry.get("header")
    if location == "header" and (not isinstance(header, str) or not header):
        raise ConfigError(f"{where} ({fid}): a header fingerprint needs `header`")
    regex = None
    if pattern_type == "regexp":
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{where} ({fid}): bad regexp: {exc}") from None
    scope = entry.get("scope", "prod")
    if scope not in SCOPES:
        raise ConfigError(f"{where} ({fid}): `scope` is {scope!r}, expected one of {', '.join(SCOPES)}")
    countries = entry.get("countries", [])
    if not isinstance(countries, list) or not all(isinstance(c, str) and len(c) == 2 for c in countries):
        raise ConfigError(f"{where} ({fid}): `countries` must be a list of ISO 3166-1 alpha-2 codes")
    return Fingerprint(
        id=fid, location=location, pattern_type=pattern_type, pattern=pattern,
        header=header.lower() if isinstance(header, str) else None,
        countries=tuple(c.upper() for c in countries), scope=scope,
        false_positive=bool(entry.get("false_positive", False)), source=str(entry.get("source", "")),
        _regex=regex,
    )


def parse_fingerprints(text: str, *, where: str = "blockpages.toml") -> tuple[Fingerprint, ...]:
    """Parses and validates a fingerprint file; censorship pages first, look-alikes last."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    entries = data.get("blockpage", [])
    fps = [_fingerprint(e, f"{where} [[blockpage]] #{i + 1}") for i, e in enumerate(entries)]
    seen: set[str] = set()
    for fp in fps:
        if fp.id in seen:
            raise ConfigError(f"{where}: fingerprint id {fp.id!r} is used twice")
        seen.add(fp.id)
    return tuple(sorted(fps, key=lambda f: f.false_positive))


@cache
def fingerprints() -> tuple[Fingerprint, ...]:
    """The shipped fingerprints (observatory/data/blockpages.toml), parsed once."""
    text = resources.files("observatory").joinpath("data/blockpages.toml").read_text(encoding="utf-8")
    return parse_fingerprints(text)


def body_text(body: Any) -> str | None:
    """OONI bodies are a string, or {"format": "base64", "data": ...} for binary ones."""
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and body.get("format") == "base64" and isinstance(body.get("data"), str):
        import base64
        import binascii

        try:
            return base64.b64decode(body["data"]).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            return None
    return None


_GLOBAL_FLAGS = re.compile(r"^\(\?([aiLmsux]+)\)")


def _scoped(pattern: str) -> str:
    """A pattern made safe to join with others: leading global flags `(?i)` become scoped `(?i:...)`."""
    m = _GLOBAL_FLAGS.match(pattern)
    return f"(?{m.group(1)}:{pattern[m.end():]})" if m else f"(?:{pattern})"


_META = set("\\.^$*+?{}[]|()")
_QUANTIFIERS = set("*?{+")


def required_literal(pattern: str) -> str | None:
    """The longest run of plain characters every match of `pattern` must contain, if one is certain:
    a substring test on it rules most bodies out before the regular expression runs (the `re` engine
    otherwise tries a pattern that starts with a class like [Tt] at every position)."""
    if re.compile(pattern).flags & (re.IGNORECASE | re.VERBOSE):
        return None  # the literal's case, or its spaces, are not what the text must contain
    runs: list[str] = []
    run: list[str] = []
    depth = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt.isalnum():  # \d, \w, \b...: a class, not a literal
                runs.append("".join(run))
                run = []
            elif depth == 0:
                run.append(nxt)
            i += 2
            continue
        if ch == "[":
            runs.append("".join(run))
            run = []
            end = pattern.find("]", i + 2)
            i = end + 1 if end > 0 else len(pattern)
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return None  # a top-level alternative: nothing is certain
        if ch in _META:
            if ch in _QUANTIFIERS and run:
                run.pop()  # the character before a quantifier may be absent
            runs.append("".join(run))
            run = []
        elif depth == 0:
            run.append(ch)
        i += 1
    runs.append("".join(run))
    best = max(runs, key=len)
    return best if len(best) >= 3 else None


def _screen_part(fp: Fingerprint) -> str:
    if fp.pattern_type == "regexp":
        return _scoped(fp.pattern)
    return ("^" if fp.pattern_type == "prefix" else "") + re.escape(fp.pattern)


@dataclass(frozen=True, slots=True)
class Matcher:
    """The fingerprints, ready for speed: header fingerprints are screened by one combined expression per
    header name (most responses carry none of them); body fingerprints are tried in priority order on the
    first BODY_WINDOW characters (a substring test each: CPython's search is faster than one big
    alternation, which the `re` engine tries at every position)."""

    fps: tuple[Fingerprint, ...]
    header_screens: dict[str, re.Pattern[str]]
    body_checks: tuple[tuple[Fingerprint, int, Any], ...]  # (fp, 0 contains | 1 prefix | 2 regexp, pattern)

    @classmethod
    def build(cls, fps: tuple[Fingerprint, ...]) -> Matcher:
        by_header: dict[str, list[str]] = {}
        for fp in fps:
            if fp.location == "header" and fp.header:
                by_header.setdefault(fp.header, []).append(_screen_part(fp))
        kinds = {"contains": 0, "prefix": 1, "regexp": 2}
        checks = tuple((fp, kinds[fp.pattern_type],
                        (required_literal(fp.pattern), fp._regex) if fp.pattern_type == "regexp" else fp.pattern)
                       for fp in fps if fp.location == "body")
        return cls(fps, {h: re.compile("|".join(parts)) for h, parts in by_header.items()}, checks)

    def _header_hit(self, headers: Mapping[str, Any]) -> bool:
        for name, value in headers.items():
            screen = self.header_screens.get(name.lower()) if isinstance(name, str) else None
            if screen is not None:
                values = value if isinstance(value, list) else [value]
                if any(isinstance(v, str) and screen.search(v) for v in values):
                    return True
        return False

    def match(self, body: Any, headers: Mapping[str, Any] | None) -> Fingerprint | None:
        text = body_text(body)
        if text and len(text) > BODY_WINDOW:
            text = text[:BODY_WINDOW]
        if headers and self._header_hit(headers):
            return next((fp for fp in self.fps if fp.matches(text, headers)), None)
        if not text:
            return None
        for fp, kind, pattern in self.body_checks:  # the hot loop: no method call per fingerprint
            if kind == 0:
                if pattern in text:
                    return fp
            elif kind == 1:
                if text.startswith(pattern):
                    return fp
            elif (pattern[0] is None or pattern[0] in text) and pattern[1].search(text) is not None:
                return fp
        return None


@cache
def default_matcher() -> Matcher:
    return Matcher.build(fingerprints())


def match_response(body: Any, headers: Mapping[str, Any] | None,
                   fps: tuple[Fingerprint, ...] | None = None) -> Fingerprint | None:
    """The first fingerprint this response matches (censorship pages are tried first), or None."""
    matcher = default_matcher() if fps is None else Matcher.build(fps)
    return matcher.match(body, headers)
