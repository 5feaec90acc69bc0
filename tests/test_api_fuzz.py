"""Schemathesis against the service's own OpenAPI schema: whatever the inputs, never a 500."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from observatory.store.duckdb import DuckDBStore
from observatory.web import WebSettings, create_app
from observatory.web.server import ServerThread

sys.path.insert(0, str(Path(__file__).parent))
import web_synth as synth  # noqa: E402


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = DuckDBStore(str(Path(tmp_path_factory.mktemp("fuzz")) / "obs.duckdb"))
    synth.pakistan_scene(store)
    server = ServerThread(create_app(WebSettings(admin_token="fuzz-admin-token-0123456789", detect_every_seconds=0),
                                     store, detector=None), "127.0.0.1", 0)
    port = server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    store.close()


def test_no_input_makes_the_service_fail(base_url: str) -> None:
    """Every operation of the schema, with inputs generated from it (valid and not), answered below 500."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(op.as_strategy())
        def call(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}")

        call()
    assert operations >= 6, "the schema lists the API's operations"
    assert not failures, failures[:10]
