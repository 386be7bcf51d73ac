"""A tenant's view of the testbed: create the qualification topology through the API.

Going through the Neutron API (as an admin acting for each project) means the
run exercises what tenants use — IPAM, VNI and MAC allocation, default
security groups — rather than writing the store behind the API's back.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from spanwire.errors import SpanwireError


class TenantAPI:
    def __init__(self, api_url: str, state_dir: str) -> None:
        with open(os.path.join(state_dir, "admin-password")) as handle:
            password = handle.read().strip()
        self.client = httpx.Client(base_url=api_url, timeout=15)
        auth = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }}
        reply = self._call("POST", "/identity/v3/auth/tokens", auth, expect="token")
        self.client.headers["X-Auth-Token"] = reply.headers["X-Subject-Token"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              expect: str = "") -> httpx.Response:
        try:
            reply = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise SpanwireError(f"api {method} {path} failed: {exc}") from exc
        if reply.status_code >= 400:
            raise SpanwireError(f"api {method} {path} → {reply.status_code}: {reply.text[:300]}")
        return reply

    def create(self, kind: str, **attrs: Any) -> dict[str, Any]:
        """POST /v2.0/<kind>s (Neutron spells multi-word kinds with hyphens in URLs)."""
        reply = self._call("POST", f"/v2.0/{kind.replace('_', '-')}s", {kind: attrs})
        return dict(reply.json()[kind])

    def network(self, name: str, project_id: str, cidr: str) -> str:
        """Create a network with one IPv4 subnet; return the subnet's id."""
        net = self.create("network", name=name, project_id=project_id)
        subnet = self.create("subnet", name=f"{name}-v4", network_id=net["id"],
                             project_id=project_id, cidr=cidr, ip_version=4)
        return str(subnet["id"])

    def external_network(self, name: str, physnet: str, cidr: str, gateway: str,
                         pool: tuple[str, str]) -> str:
        """The provider network (flat, `router:external`), as an operator creates it; its id."""
        net = self.create("network", name=name, shared=False,
                          **{"router:external": True, "provider:network_type": "flat",
                             "provider:physical_network": physnet})
        self.create("subnet", name=f"{name}-v4", network_id=net["id"], cidr=cidr,
                    ip_version=4, gateway_ip=gateway, enable_dhcp=False,
                    allocation_pools=[{"start": pool[0], "end": pool[1]}])
        return str(net["id"])

    def router(self, name: str, project_id: str, subnet_ids: list[str],
               external_network: str | None = None) -> str:
        """A router with an interface on each subnet (each gets its gateway address)
        and, with `external_network`, its gateway there (SNAT on)."""
        attrs: dict[str, Any] = {"name": name, "project_id": project_id}
        if external_network:
            attrs["external_gateway_info"] = {"network_id": external_network}
        router = self.create("router", **attrs)
        for subnet_id in subnet_ids:
            self._call("PUT", f"/v2.0/routers/{router['id']}/add_router_interface",
                       {"subnet_id": subnet_id})
        return str(router["id"])

    def floating_ip(self, external_network: str, project_id: str, port_id: str) -> str:
        """A floating IP on `external_network` associated with `port_id`; its address."""
        fip = self.create("floatingip", floating_network_id=external_network,
                          project_id=project_id, port_id=port_id)
        return str(fip["floating_ip_address"])

    def public_group(self, project_id: str) -> str:
        """A group admitting ICMP and any TCP from anywhere (for VMs with floating IPs)."""
        group = self.create("security_group", name="public", project_id=project_id)
        for proto in ("icmp", "tcp"):
            self.create("security_group_rule", security_group_id=group["id"],
                        direction="ingress", ethertype="IPv4", protocol=proto,
                        remote_ip_prefix="0.0.0.0/0", project_id=project_id)
        return str(group["id"])

    def web_group(self, project_id: str, port: int) -> str:
        """A group admitting only TCP `port` from anywhere (egress: Neutron's defaults)."""
        group = self.create("security_group", name="web", project_id=project_id)
        self.create("security_group_rule", security_group_id=group["id"], direction="ingress",
                    ethertype="IPv4", protocol="tcp", port_range_min=port,
                    port_range_max=port, remote_ip_prefix="0.0.0.0/0", project_id=project_id)
        return str(group["id"])

    def close(self) -> None:
        self.client.close()
