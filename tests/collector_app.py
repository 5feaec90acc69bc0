"""A small collector service for tests: the collector router over a DuckDB store, nothing else.

Run in a thread (UvicornThread) or as a process: `python tests/collector_app.py DB HOST PORT` (the kill test
needs a process it can SIGKILL).
"""

from __future__ import annotations

import sys

from fastapi import FastAPI

from observatory.store import open_store
from observatory.store.base import Store
from observatory.web.collector import make_collector_router


def make_app(store: Store, **limits: int) -> FastAPI:
    app = FastAPI()
    app.include_router(make_collector_router(lambda: store, **limits))
    return app


if __name__ == "__main__":
    import uvicorn

    db, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    uvicorn.run(make_app(open_store(db)), host=host, port=port, access_log=False, log_level="warning")
