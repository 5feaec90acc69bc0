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

import ahocorasick_rs

from observatory.errors import ConfigError

_sre = re._constants  # type: ignore[attr-defined]  # the parsed form of a pattern, to read its literals
_sre_parse = re._parser.parse  # type: ignore[attr-defined]

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


_MIN_LITERAL = 3  # a required substring shorter than this rules out too little to be worth a test


def _literal_alternatives(op: Any, av: Any) -> tuple[str, ...] | None:
    """The strings one parsed item can match, when it is plain text or a group of plain-text alternatives."""
    if op is _sre.LITERAL:
        return (chr(av),)
    if op is _sre.BRANCH:
        alts = []
        for branch in av[1]:
            if not all(o is _sre.LITERAL for o, _ in branch):
                return None
            alts.append("".join(chr(a) for _, a in branch))
        return tuple(alts)
    if op is _sre.SUBPATTERN:
        _, add_flags, _, sub = av
        items = list(sub)
        if add_flags & (re.IGNORECASE | re.VERBOSE) or not items:
            return None
        if len(items) == 1:
            return _literal_alternatives(*items[0])
        if all(o is _sre.LITERAL for o, _ in items):
            return ("".join(chr(a) for _, a in items),)
    return None


def required_literals(pattern: str) -> tuple[str, ...] | None:
    """Strings of which every match of `pattern` contains at least one: the longest run of plain text in its
    top-level sequence, or a group of plain-text alternatives whose shortest is longer. None when nothing
    certain is at least _MIN_LITERAL characters long (or the pattern ignores case: the text's case is then not
    the literal's). A substring test on them rules most bodies out before the regular expression runs."""
    parsed = _sre_parse(pattern)
    if parsed.state.flags & (re.IGNORECASE | re.VERBOSE):
        return None
    best: tuple[str, ...] | None = None
    best_len = _MIN_LITERAL - 1

    def offer(candidates: tuple[str, ...] | None) -> None:
        nonlocal best, best_len
        shortest = min(map(len, candidates)) if candidates else 0
        if candidates and shortest > best_len:
            best, best_len = candidates, shortest

    run: list[str] = []
    for op, av in parsed:
        if op is _sre.LITERAL:
            run.append(chr(av))
            continue
        offer(("".join(run),))
        run = []
        offer(_literal_alternatives(op, av))
    offer(("".join(run),))
    return best


def _screen_part(fp: Fingerprint) -> str:
    if fp.pattern_type == "regexp":
        return _scoped(fp.pattern)
    return ("^" if fp.pattern_type == "prefix" else "") + re.escape(fp.pattern)


@dataclass(frozen=True, slots=True)
class Matcher:
    """The fingerprints, ready for speed: header fingerprints are screened by one combined expression per
    header name (most responses carry none of them); body fingerprints by one Aho-Corasick pass over the
    first BODY_WINDOW characters finding every occurrence of the substrings they require (their pattern, or a
    regexp's required literals). Only the fingerprints whose substrings occur are then tried, in priority order.
    One pass for all of them, rather than a substring search per fingerprint: the cost of a body does not grow
    with the number of fingerprints."""

    fps: tuple[Fingerprint, ...]
    header_screens: dict[str, re.Pattern[str]]
    body_fps: tuple[Fingerprint, ...]  # priority order
    always: frozenset[int]  # indices into body_fps of fingerprints that require no literal: always tried
    literal_fps: tuple[tuple[int, ...], ...]  # per literal of the screen: the fingerprints requiring it
    screen: Any  # ahocorasick_rs.BytesAhoCorasick over the literals (UTF-8), None when there are none

    @classmethod
    def build(cls, fps: tuple[Fingerprint, ...]) -> Matcher:
        by_header: dict[str, list[str]] = {}
        for fp in fps:
            if fp.location == "header" and fp.header:
                by_header.setdefault(fp.header, []).append(_screen_part(fp))
        body_fps = tuple(fp for fp in fps if fp.location == "body")
        by_literal: dict[str, list[int]] = {}
        always = set()
        for i, fp in enumerate(body_fps):
            required = required_literals(fp.pattern) if fp.pattern_type == "regexp" else (fp.pattern,)
            if required is None:
                always.add(i)
            for literal in required or ():
                by_literal.setdefault(literal, []).append(i)
        # UTF-8 keeps substrings substrings (no character's encoding starts inside another's)
        screen = ahocorasick_rs.BytesAhoCorasick([_utf8(lit) for lit in by_literal]) if by_literal else None
        return cls(fps, {h: re.compile("|".join(parts)) for h, parts in by_header.items()}, body_fps,
                   frozenset(always), tuple(map(tuple, by_literal.values())), screen)

    def _header_hit(self, headers: Mapping[str, Any]) -> bool:
        for name, value in headers.items():
            screen = self.header_screens.get(name.lower()) if isinstance(name, str) else None
            if screen is not None:
                values = value if isinstance(value, list) else [value]
                if any(isinstance(v, str) and screen.search(v) for v in values):
                    return True
        return False

    def _body_candidates(self, text: str) -> list[int]:
        """The body fingerprints that may match `text`, in priority order: every one whose literal occurs."""
        found = self.screen.find_matches_as_indexes(_utf8(text), overlapping=True) if self.screen else ()
        if not found and not self.always:
            return []
        hits = set(self.always)
        for literal, _, _ in found:
            hits.update(self.literal_fps[literal])
        return sorted(hits)

    def match(self, body: Any, headers: Mapping[str, Any] | None) -> Fingerprint | None:
        text = body_text(body)
        if text and len(text) > BODY_WINDOW:
            text = text[:BODY_WINDOW]
        if headers and self._header_hit(headers):
            return next((fp for fp in self.fps if fp.matches(text, headers)), None)
        if not text:
            return None
        for i in self._body_candidates(text):
            fp = self.body_fps[i]
            if fp.matches_text(text):
                return fp
        return None


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a JSON string may hold a lone surrogate


@cache
def default_matcher() -> Matcher:
    return Matcher.build(fingerprints())


def match_response(body: Any, headers: Mapping[str, Any] | None,
                   fps: tuple[Fingerprint, ...] | None = None) -> Fingerprint | None:
    """The first fingerprint this response matches (censorship pages are tried first), or None."""
    matcher = default_matcher() if fps is None else Matcher.build(fps)
    return matcher.match(body, headers)
