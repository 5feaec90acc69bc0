"""The web service: dashboard pages, the JSON API, the collector, the feed and the metrics.

`create_app(settings, store)` builds the whole FastAPI application; `observatory serve` and `observatory demo`
run it. Nothing here decides what an incident is: pages and API only read what detection stored.
"""

from __future__ import annotations

from observatory.web.app import create_app
from observatory.web.settings import WebSettings

__all__ = ["WebSettings", "create_app"]
