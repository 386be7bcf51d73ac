"""Allocation races in-process: two app instances ("replicas") on one store, many threads.

Each app has its own caches, exactly like two `serve` processes, so they
only learn about each other's reservations through failed compares.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from api_helpers import ADMIN_PASSWORD

from spanwire.api import networks, ports, quotas, subnets
from spanwire.api.app import create_app
from spanwire.api.context import Context
from spanwire.errors import SpanwireError
from spanwire.store import connect

ADMIN = Context("admin", "proj-admin", frozenset({"admin", "member", "reader"}))
MEMBER = Context("u1", "proj-race", frozenset({"member", "reader"}))


def _call(handler: Any, model: Any, body: dict[str, Any], req: Any, ctx: Context) -> Any:
    return json.loads(handler(model.model_validate(body), req, ctx).body)


def test_two_replicas_never_share_an_ip_and_respect_quota(tmp_path: Path) -> None:
    """Quota lowered below the default (exact-count mode); the etcd test covers raised quotas."""
    url = f"sqlite:///{tmp_path}/state.db"
    stores = [connect(url), connect(url)]
    try:
        reqs = [SimpleNamespace(app=create_app(s, admin_password=ADMIN_PASSWORD)) for s in stores]
        quotas.update_quota(
            "proj-race", quotas.QuotaBody.model_validate({"quota": {"port": 120}}), reqs[0], ADMIN
        )
        net = _call(
            networks.create_network, networks.NetworkCreateBody, {"network": {}}, reqs[0], MEMBER
        )["network"]["id"]
        # A /25 has 125 pool addresses: the quota (120) binds first.
        _call(
            subnets.create_subnet,
            subnets.SubnetCreateBody,
            {"subnet": {"network_id": net, "cidr": "10.5.0.0/25"}},
            reqs[1],
            MEMBER,
        )
        outcomes: Counter[str] = Counter()
        ips: list[str] = []

        def create(n: int) -> None:
            try:
                port = _call(
                    ports.create_port,
                    ports.PortCreateBody,
                    {"port": {"network_id": net}},
                    reqs[n % 2],
                    MEMBER,
                )["port"]
                ips.append(port["fixed_ips"][0]["ip_address"])
                outcomes["created"] += 1
            except SpanwireError as exc:
                outcomes[exc.neutron_type] += 1

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(130)))
        assert outcomes == Counter({"created": 120, "OverQuota": 10})
        assert len(set(ips)) == 120
        # Raise the quota: now the pool runs out first, with Neutron's error.
        quotas.update_quota(
            "proj-race", quotas.QuotaBody.model_validate({"quota": {"port": 500}}), reqs[1], ADMIN
        )
        outcomes.clear()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, range(10)))
        assert outcomes == Counter({"created": 5, "IpAddressGenerationFailure": 5})
        assert len(set(ips)) == 125
    finally:
        for s in stores:
            s.close()


def test_lowered_quota_counts_exactly(tmp_path: Path) -> None:
    """Below slots still held, creates fall back to exact counting (no over-admission)."""
    store = connect(f"sqlite:///{tmp_path}/state.db")
    try:
        req = SimpleNamespace(app=create_app(store, admin_password=ADMIN_PASSWORD))
        for _ in range(5):
            _call(networks.create_network, networks.NetworkCreateBody, {"network": {}}, req, MEMBER)
        quotas.update_quota(
            "proj-race", quotas.QuotaBody.model_validate({"quota": {"network": 3}}), req, ADMIN
        )
        try:
            _call(networks.create_network, networks.NetworkCreateBody, {"network": {}}, req, MEMBER)
            raise AssertionError("created a network over the lowered quota")
        except SpanwireError as exc:
            assert exc.neutron_type == "OverQuota"
        listing = json.loads(
            networks.list_networks(
                SimpleNamespace(app=req.app, query_params=_NoQuery(), url="http://x/v2.0/networks"),
                MEMBER,
            ).body
        )
        for net in listing["networks"][:3]:
            networks.delete_network(net["id"], req, MEMBER)
        _call(networks.create_network, networks.NetworkCreateBody, {"network": {}}, req, MEMBER)
    finally:
        store.close()


class _NoQuery:
    def multi_items(self) -> list[tuple[str, str]]:
        return []
