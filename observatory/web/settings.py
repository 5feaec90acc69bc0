"""Settings of the web service: defaults < environment (OBSERVATORY_*) < explicit values from the CLI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from observatory.errors import ConfigError
from observatory.web import limits


@dataclass(frozen=True, slots=True, kw_only=True)
class WebSettings:
    # Analysts who present this bearer token may annotate, review and dismiss incidents. None: nobody can.
    admin_token: str | None = None
    # Incremental detection runs in a background thread this often (seconds); 0 disables the scheduler.
    detect_every_seconds: float = 60.0
    # The largest page an API caller may ask for; bigger asks are a 400, not a slow query.
    max_page_size: int = 500
    # How often the pages poll the JSON API for fresh data (seconds).
    poll_seconds: int = 15
    # Shown in the page header and the feed.
    title: str = "observatory"
    # Bounds on anonymous clients (observatory.web.limits, SECURITY.md): requests per second per address and the
    # burst allowed (0: no limit, for an embedded app; `observatory serve` sets limits.API_RATE unless told
    # otherwise), failed admin-token attempts per address per 15 minutes, body sizes.
    api_rate: float = 0.0
    api_burst: float = limits.API_BURST
    admin_failures: int = limits.ADMIN_FAILURES
    small_body_bytes: int = limits.SMALL_BODY_BYTES
    default_body_bytes: int = limits.DEFAULT_BODY_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> WebSettings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("OBSERVATORY_ADMIN_TOKEN"):
            values["admin_token"] = env["OBSERVATORY_ADMIN_TOKEN"]
        if env.get("OBSERVATORY_DETECT_EVERY"):
            try:
                values["detect_every_seconds"] = float(env["OBSERVATORY_DETECT_EVERY"])
            except ValueError:
                raise ConfigError(
                    f"OBSERVATORY_DETECT_EVERY={env['OBSERVATORY_DETECT_EVERY']!r}: expected seconds"
                ) from None
        for name, kind in (("api_rate", float), ("api_burst", float), ("admin_failures", int)):
            text = env.get(f"OBSERVATORY_{name.upper()}")
            if text:
                try:
                    values[name] = kind(text)
                except ValueError:
                    raise ConfigError(f"OBSERVATORY_{name.upper()}={text!r}: expected a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = replace(cls(), **values)
        if settings.admin_token is not None and len(settings.admin_token) < 16:
            raise ConfigError("the admin token must be at least 16 characters long")
        if settings.api_rate < 0 or settings.api_burst < 1 or settings.admin_failures < 1:
            raise ConfigError("rate limits: api_rate must be >= 0 (0: off), api_burst and admin_failures >= 1")
        return settings
