"""32 clients, two `serve` replicas, one etcd: 2,000 ports on one /21 with nothing lost.

The quota is set to exactly 2,000 and 2,050 creates are attempted, so the
last 50 must fail with OverQuota while every success holds a distinct IP and
MAC from the pool.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from api_helpers import ADMIN_PASSWORD, ServeProcess, make_account, token

from spanwire.store import connect, keys
from spanwire.store.etcd_server import ETCD_BINARY, EtcdCluster

CLIENTS, QUOTA, ATTEMPTS = 32, 2000, 2050


@pytest.fixture
def etcd_store_url() -> Iterator[str]:
    import os

    if not os.access(ETCD_BINARY, os.X_OK):
        pytest.skip(f"{ETCD_BINARY} not installed")
    cluster = EtcdCluster(size=1)
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


def _race(urls: list[str], tokens: list[str], network_id: str) -> tuple[list[dict], Counter[str]]:
    created: list[dict] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    remaining = [ATTEMPTS]

    def worker(n: int) -> None:
        url, tok = urls[n % len(urls)], tokens[n % len(tokens)]
        with httpx.Client(base_url=url, headers={"X-Auth-Token": tok}, timeout=60) as c:
            while True:
                with lock:
                    if remaining[0] == 0:
                        return
                    remaining[0] -= 1
                r = c.post("/v2.0/ports", json={"port": {"network_id": network_id}})
                with lock:
                    if r.status_code == 201:
                        created.append(r.json()["port"])
                    else:
                        errors[f"{r.status_code} {r.json()['NeutronError']['type']}"] += 1

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(worker, range(CLIENTS)))
    return created, errors


@pytest.mark.etcd
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_replicas_32_clients_2000_ports(etcd_store_url: str, tmp_path: Path) -> None:
    with (
        ServeProcess(etcd_store_url, tmp_path / "a.log") as a,
        ServeProcess(etcd_store_url, tmp_path / "b.log") as b,
    ):
        admin = token(a.url, "admin", ADMIN_PASSWORD, "admin")
        acct = make_account(a.url, admin, "race", "racer", "member")
        h = {"X-Auth-Token": admin}
        assert (
            httpx.put(
                f"{a.url}/v2.0/quotas/{acct.project_id}", json={"quota": {"port": QUOTA}}, headers=h
            ).status_code
            == 200
        )
        member = [token(u, acct.user, acct.password, acct.project) for u in (a.url, b.url)]
        mh = {"X-Auth-Token": member[0]}
        net = httpx.post(
            f"{a.url}/v2.0/networks", json={"network": {"name": "race"}}, headers=mh
        ).json()["network"]
        sub = httpx.post(
            f"{b.url}/v2.0/subnets",
            json={"subnet": {"network_id": net["id"], "cidr": "10.8.0.0/21", "ip_version": 4}},
            headers={"X-Auth-Token": member[1]},
        ).json()["subnet"]

        created, errors = _race([a.url, b.url], member, net["id"])

        # A 503 is an honest "try again" from a store starved by machine load; it
        # must stay rare. Every other refusal is OverQuota.
        unavailable = errors.pop("503 ServiceUnavailable", 0)
        assert set(errors) <= {"409 OverQuota"} and unavailable <= 10, (errors, unavailable)
        assert len(created) + errors["409 OverQuota"] + unavailable == ATTEMPTS
        listings = []
        for url, tok in ((a.url, member[0]), (b.url, member[1])):
            listings.append(
                httpx.get(
                    f"{url}/v2.0/ports",
                    params={"network_id": net["id"]},
                    headers={"X-Auth-Token": tok},
                    timeout=60,
                ).json()["ports"]
            )
        listed = listings[0]
        # Both replicas agree; none lost; the quota is respected and filled.
        assert sorted(p["id"] for p in listings[1]) == sorted(p["id"] for p in listed)
        assert {p["id"] for p in created} <= {p["id"] for p in listed}
        assert len(listed) == QUOTA
        ips = [p["fixed_ips"][0]["ip_address"] for p in listed]
        macs = [p["mac_address"] for p in listed]
        assert len(set(ips)) == QUOTA and len(set(macs)) == QUOTA
        pool = sub["allocation_pools"][0]
        lo, hi = ipaddress.IPv4Address(pool["start"]), ipaddress.IPv4Address(pool["end"])
        assert all(lo <= ipaddress.IPv4Address(ip) <= hi for ip in ips)
        assert all(m.startswith("fa:16:3e:") for m in macs)
        details = httpx.get(f"{a.url}/v2.0/quotas/{acct.project_id}/details", headers=h).json()
        assert details["quota"]["port"] == {"limit": QUOTA, "used": QUOTA, "reserved": 0}
    store = connect(etcd_store_url)
    try:
        reserved = store.range(keys.prefix("ipam", sub["id"])).items
        assert sorted(kv.key.rsplit("/", 1)[1] for kv in reserved) == sorted(ips)
        assert len(store.range(keys.prefix("macs")).items) == QUOTA
    finally:
        store.close()
