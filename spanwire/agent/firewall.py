"""Port security as nftables rules, rendered purely from the model.

One `inet spanwire` table per routing namespace with a forward-hook chain:
a VM may send only from its own MAC and addresses (plus allowed address
pairs); everything else it sends is dropped. The rules are kept in the exact
JSON form `nft -j list` prints back, so desired and actual compare as data.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from spanwire.agent import naming
from spanwire.agent.state import Firewall
from spanwire.model import Network, Port

TABLE = "spanwire_ps"  # "spanwire" is the security-group table (agent/plan/security_groups.py)
CHAIN = "ports"
CHAIN_SPEC = (("type", "filter"), ("hook", "forward"), ("prio", 0), ("policy", "accept"))


def _addr(value: str) -> Any:
    if "/" in value:
        net = ipaddress.IPv4Network(value, strict=False)
        if net.prefixlen < 32:
            return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
        return str(net.network_address)
    return value


def _rule(*expr: Any) -> Any:
    """A rule's expression list, compared as data (dict equality ignores key order)."""
    return list(expr)


def port_rules(port: Port) -> list[Any]:
    tap = naming.tap(port.id)
    iif = {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": tap}}
    ips = sorted({*port.ips, *(p.ip_address for p in port.allowed_address_pairs)})
    macs = sorted({port.mac_address, *(p.mac_address for p in port.allowed_address_pairs
                                        if p.mac_address)})
    values = [_addr(ip) for ip in ips]
    allowed_ip = values[0] if len(values) == 1 else {"set": values}
    allowed_mac = macs[0] if len(macs) == 1 else {"set": macs}
    return [
        _rule(iif, {"match": {"op": "!=", "left": {"payload": {"protocol": "ether",
                                                                "field": "saddr"}},
                              "right": allowed_mac}}, {"drop": None}),
        _rule(iif, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip",
                                                                "field": "saddr"}},
                              "right": allowed_ip}}, {"drop": None}),
    ]


def render(network: Network, local_ports: list[Port]) -> Firewall | None:
    """The port-security ruleset of one routing namespace (None: no table at all)."""
    if not network.port_security_enabled:
        return None
    rules: list[Any] = []
    for port in sorted(local_ports, key=lambda p: p.id):
        if port.port_security_enabled and port.ips:
            rules += port_rules(port)
    if not rules:
        return None
    return Firewall(chain=CHAIN_SPEC, rules=tuple(rules))


def to_nft_json(fw: Firewall) -> str:
    """One atomic transaction replacing the whole table (no window without rules)."""
    table = {"family": "inet", "name": TABLE}
    cmds: list[dict[str, Any]] = [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
        {"add": {"chain": {"family": "inet", "table": TABLE, "name": CHAIN, **dict(fw.chain)}}},
    ]
    for rule in fw.rules:
        cmds.append({"add": {"rule": {"family": "inet", "table": TABLE, "chain": CHAIN,
                                      "expr": rule}}})
    return json.dumps({"nftables": cmds})


def from_nft_listing(listing: dict[str, Any]) -> Firewall | None:
    """Parse `nft -j list table inet spanwire` back into a Firewall (handles dropped)."""
    chain: tuple[tuple[str, Any], ...] = ()
    rules: list[Any] = []
    for item in listing.get("nftables", []):
        if "chain" in item and item["chain"].get("name") == CHAIN:
            c = item["chain"]
            chain = tuple((k, c.get(k)) for k, _ in CHAIN_SPEC)
        elif "rule" in item and item["rule"].get("chain") == CHAIN:
            rules.append(_rule(*item["rule"]["expr"]))
    if not chain and not rules:
        return Firewall(chain=(), rules=())
    return Firewall(chain=chain, rules=tuple(rules))
