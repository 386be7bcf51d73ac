"""API fixtures: a real `spanwire serve` on a temp SQLite store, and in-process apps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from api_helpers import ADMIN_PASSWORD, Account, ServeProcess, token
from fastapi.testclient import TestClient

from spanwire.api.app import create_app
from spanwire.store import connect


@dataclass(frozen=True)
class Cloud:
    url: str
    admin: Account
    admin_token: str
    tmp: Path


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    """One real `spanwire serve` process on a fresh SQLite store, stopped by PID after."""
    tmp = tmp_path_factory.mktemp("serve")
    with ServeProcess(f"sqlite:///{tmp}/state.db", tmp / "serve.log") as server:
        admin_token = token(server.url, "admin", ADMIN_PASSWORD, "admin")
        projects = httpx.get(
            f"{server.url}/identity/v3/projects",
            params={"name": "admin"},
            headers={"X-Auth-Token": admin_token},
        ).json()["projects"]
        admin = Account("admin", ADMIN_PASSWORD, "admin", projects[0]["id"], "")
        yield Cloud(server.url, admin, admin_token, tmp)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The app in-process on a temp SQLite store, with an admin token header set."""
    store = connect(f"sqlite:///{tmp_path}/state.db")
    try:
        app = create_app(store, admin_password=ADMIN_PASSWORD)
        with TestClient(app) as c:
            r = c.post(
                "/identity/v3/auth/tokens",
                json={
                    "auth": {
                        "identity": {
                            "methods": ["password"],
                            "password": {
                                "user": {
                                    "name": "admin",
                                    "domain": {"name": "Default"},
                                    "password": ADMIN_PASSWORD,
                                }
                            },
                        },
                        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
                    }
                },
            )
            c.headers["X-Auth-Token"] = r.headers["X-Subject-Token"]
            yield c
    finally:
        store.close()


def account(c: TestClient, project: str, user: str, role: str) -> tuple[Account, dict[str, str]]:
    """An account made through the in-process app, and its auth header."""
    from api_helpers import auth_body

    h = {"X-Auth-Token": c.headers["X-Auth-Token"]}
    found = c.get("/identity/v3/projects", params={"name": project}, headers=h).json()["projects"]
    project_id = (
        found[0]["id"]
        if found
        else c.post("/identity/v3/projects", json={"project": {"name": project}}, headers=h).json()[
            "project"
        ]["id"]
    )
    user_id = c.post(
        "/identity/v3/users", json={"user": {"name": user, "password": "pw"}}, headers=h
    ).json()["user"]["id"]
    c.put(f"/identity/v3/projects/{project_id}/users/{user_id}/roles/{role}", headers=h)
    r = c.post("/identity/v3/auth/tokens", json=auth_body(user, "pw", project))
    assert r.status_code == 201, r.text
    return (
        Account(user, "pw", project, project_id, user_id),
        {"X-Auth-Token": r.headers["X-Subject-Token"]},
    )
