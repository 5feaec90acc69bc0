"""The platform catalog (data/catalog.toml): platforms, their domains and test URLs; url -> platform."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from urllib.parse import urlsplit

CONTROL = "control"


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    id: str
    name: str
    categories: tuple[str, ...]
    domains: tuple[str, ...]
    urls: tuple[str, ...]

    @property
    def is_control(self) -> bool:
        return self.id == CONTROL


@cache
def platforms() -> dict[str, Platform]:
    """Every platform of the catalog by id, in catalog order."""
    text = resources.files("observatory").joinpath("data/catalog.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)["platform"]
    return {
        pid: Platform(
            id=pid,
            name=p["name"],
            categories=tuple(p["categories"]),
            domains=tuple(d.lower() for d in p["domains"]),
            urls=tuple(p["urls"]),
        )
        for pid, p in raw.items()
    }


def platform_ids() -> tuple[str, ...]:
    return tuple(platforms())


def get(platform_id: str) -> Platform:
    try:
        return platforms()[platform_id]
    except KeyError:
        known = ", ".join(platforms())
        raise KeyError(f"unknown platform {platform_id!r} (known: {known})") from None


def display_name(platform_id: str) -> str:
    p = platforms().get(platform_id)
    return p.name if p else platform_id


@cache
def _domain_index() -> dict[str, str]:
    return {d: p.id for p in platforms().values() for d in p.domains}


def hostname_of(url_or_host: str) -> str:
    s = url_or_host.strip()
    if "://" in s:
        try:
            host = urlsplit(s).hostname or ""
        except ValueError:  # e.g. "http://[zz]/": not a host we could map to a platform
            return ""
    else:
        host = s.split("/", 1)[0].rsplit(":", 1)[0] if s.count(":") == 1 else s.split("/", 1)[0]
    return host.lower().rstrip(".")


def platform_of(url_or_host: str | None) -> str | None:
    """The platform id of a URL or hostname (`pbs.twimg.com` -> twitter), or None if not in the catalog."""
    if not url_or_host:
        return None
    host = hostname_of(url_or_host)
    index = _domain_index()
    labels = host.split(".")
    for i in range(len(labels) - 1):
        pid = index.get(".".join(labels[i:]))
        if pid:
            return pid
    return None


def resolve_targets(selection: str) -> list[str]:
    """Test URLs for a named selection: a platform id, a category (social, messaging, video, control) or all."""
    sel = selection.strip().lower()
    plats = platforms().values()
    if sel == "all":
        chosen = list(plats)
    elif sel in platforms():
        chosen = [platforms()[sel]]
    else:
        chosen = [p for p in plats if sel in p.categories]
        if not chosen:
            raise KeyError(f"unknown target selection {selection!r}")
    urls = [u for p in chosen for u in p.urls]
    if sel != CONTROL and not any(p.is_control for p in chosen):
        urls += list(platforms()[CONTROL].urls[:2])
    return urls
