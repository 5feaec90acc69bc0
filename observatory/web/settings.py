"""Settings of the web service, taken from the run's `observatory.settings.Settings` (defaults < config file <
environment < flags) plus what only the command decides (the demo's pace, titles)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from observatory.errors import ConfigError
from observatory.settings import Settings
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
    # What one probe may have stored per clock hour and per UTC day, in measurements and bytes (SECURITY.md).
    probe_per_hour: int = limits.PROBE_PER_HOUR
    probe_per_day: int = limits.PROBE_PER_DAY
    probe_bytes_per_hour: int = limits.PROBE_BYTES_PER_HOUR
    probe_bytes_per_day: int = limits.PROBE_BYTES_PER_DAY
    small_body_bytes: int = limits.SMALL_BODY_BYTES
    default_body_bytes: int = limits.DEFAULT_BODY_BYTES

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WebSettings:
        """The service's settings from the run's (defaults < file < environment < flags, already merged),
        then the command's own values (`overrides`, None: not given), then checked."""
        values: dict[str, Any] = {}
        for ours, theirs in (("admin_token", "admin_token"), ("detect_every_seconds", "detect_every"),
                             ("api_rate", "api_rate"), ("api_burst", "api_burst"),
                             ("admin_failures", "admin_failures"), ("probe_per_hour", "probe_per_hour"),
                             ("probe_per_day", "probe_per_day"), ("probe_bytes_per_hour", "probe_bytes_per_hour"),
                             ("probe_bytes_per_day", "probe_bytes_per_day")):
            value = getattr(settings, theirs)
            if value is not None:
                values[ours] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls._checked(replace(cls(), **values))

    @staticmethod
    def _checked(settings: WebSettings) -> WebSettings:
        if settings.admin_token is not None and len(settings.admin_token) < 16:
            raise ConfigError("the admin token must be at least 16 characters long")
        if settings.api_rate < 0 or settings.api_burst < 1 or settings.admin_failures < 1:
            raise ConfigError("rate limits: api_rate must be >= 0 (0: off), api_burst and admin_failures >= 1")
        quotas = (settings.probe_per_hour, settings.probe_per_day, settings.probe_bytes_per_hour,
                  settings.probe_bytes_per_day)
        if min(quotas) < 1:
            raise ConfigError("probe quotas ([collector] per_hour, per_day, bytes_per_hour, bytes_per_day) must be "
                              f"positive, got {', '.join(map(str, quotas))}")
        return settings
