"""No input yields a 5xx: schemathesis against the app's own OpenAPI document.

Bounded (a few examples per operation) so the whole run stays well under two
minutes on a small machine; every request carries an admin token so the
handlers, not just the auth check, see the generated input.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from api_helpers import ADMIN_PASSWORD, auth_body
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from spanwire.api.app import create_app
from spanwire.store import connect

EXAMPLES = 40


@pytest.fixture(scope="module")
def app_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    store = connect(f"sqlite:///{tmp}/state.db")
    try:
        app = create_app(store, admin_password=ADMIN_PASSWORD)
        c = TestClient(app)
        tok = c.post("/identity/v3/auth/tokens", json=auth_body("admin", ADMIN_PASSWORD, "admin"))
        token = tok.headers["X-Subject-Token"]
        h = {"X-Auth-Token": token}
        # Some real objects, so generated ids sometimes hit and handlers go deeper.
        net = c.post("/v2.0/networks", json={"network": {"name": "fuzz"}}, headers=h).json()
        c.post(
            "/v2.0/subnets",
            json={"subnet": {"network_id": net["network"]["id"], "cidr": "10.0.0.0/24"}},
            headers=h,
        )
        yield app, token
    finally:
        store.close()


def test_no_input_yields_a_5xx(app_token: tuple[FastAPI, str]) -> None:
    """Every operation of the OpenAPI document, a few generated cases each."""
    app, token = app_token
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 50

    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call(headers={"X-Auth-Token": token})
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.body!r:.200} -> "
                    f"{response.status_code} {response.text[:300]}"
                )

        check()
    assert not failures, "\n".join(failures[:20])
