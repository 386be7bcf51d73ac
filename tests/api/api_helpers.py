"""Real `spanwire serve` processes and Keystone helpers for the API tests.

Every process is started by this module and stopped by its PID in `stop()`;
callers use `with ServeProcess(...)` or a yield fixture so cleanup always runs.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from spanwire.cli.serve import serve_argv
from spanwire.store.etcd_server import free_ports

ADMIN_PASSWORD = "adm-" + secrets.token_hex(8)


class ServeProcess:
    """One `spanwire serve` replica on a free 127.0.0.1 port."""

    def __init__(
        self,
        store_url: str,
        log_path: Path,
        password: str = ADMIN_PASSWORD,
        extra: list[str] | None = None,
    ) -> None:
        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = dict(os.environ, SPANWIRE_ADMIN_PASSWORD=password)
        cmd = serve_argv(store_url, f"127.0.0.1:{self.port}", "--log-level", "warning",
                         *(extra or []))
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"serve exited with {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve on {self.url} not ready in {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def auth_body(user: str, password: str, project: str) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"name": "Default"}, "password": password}
                },
            },
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}},
        }
    }


def token(url: str, user: str, password: str, project: str) -> str:
    r = httpx.post(f"{url}/identity/v3/auth/tokens", json=auth_body(user, password, project))
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


@dataclass(frozen=True)
class Account:
    user: str
    password: str
    project: str
    project_id: str
    user_id: str


def make_account(url: str, admin_token: str, project: str, user: str, role: str) -> Account:
    """A project (created if missing) and a user with `role` in it, via Keystone's API."""
    h = {"X-Auth-Token": admin_token}
    found = httpx.get(f"{url}/identity/v3/projects", params={"name": project}, headers=h).json()
    if found["projects"]:
        project_id = found["projects"][0]["id"]
    else:
        r = httpx.post(
            f"{url}/identity/v3/projects", json={"project": {"name": project}}, headers=h
        )
        r.raise_for_status()
        project_id = r.json()["project"]["id"]
    password = "pw-" + secrets.token_hex(6)
    r = httpx.post(
        f"{url}/identity/v3/users",
        json={"user": {"name": user, "password": password, "default_project_id": project_id}},
        headers=h,
    )
    r.raise_for_status()
    user_id = r.json()["user"]["id"]
    r = httpx.put(
        f"{url}/identity/v3/projects/{project_id}/users/{user_id}/roles/{role}", headers=h
    )
    r.raise_for_status()
    return Account(user, password, project, project_id, user_id)


def write_clouds_yaml(path: Path, url: str, accounts: dict[str, Account]) -> Path:
    clouds = {
        name: {
            "auth": {
                "auth_url": f"{url}/identity/v3",
                "username": a.user,
                "password": a.password,
                "project_name": a.project,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": "RegionOne",
            "identity_api_version": 3,
        }
        for name, a in accounts.items()
    }
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    return path
