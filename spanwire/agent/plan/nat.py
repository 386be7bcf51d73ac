"""A router's NAT on one node, as one nftables `inet` table: floating IPs and default SNAT.

Pure. Only the router namespace on the node that hosts a floating IP's port
carries its DNAT/SNAT pair, and every node that realizes a router SNATs its
own VMs' traffic to its own external address (`north_south`), so no node ever
translates another node's traffic.

- DNAT only for packets that arrive on the gateway (from the provider
  network): a VM reaching a floating IP from inside the cloud would be
  translated on its own node while the reply is routed on the destination's
  node, which has no conntrack entry to undo it (Neutron DVR has the same
  limit without its FIP namespace hairpin);
- a VM with a floating IP leaves through it; everything else from the
  router's attached subnets leaves through the node's SNAT address, unless the
  router's `enable_snat` is false (then it leaves untranslated, as Neutron);
- the table is compared by digest like the security-group table, so a warm
  restart reads one chain and writes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spanwire.agent.plan.nft_table import (
    FAMILY,
    ApplyRuleset,
    Json,
    RulesetChange,
    plan_ruleset,
    seal,
)
from spanwire.agent.state import RoutingNs

TABLE = "spanwire_nat"


@dataclass(frozen=True, order=True)
class FloatingMap:
    floating_ip: str
    fixed_ip: str


def _match(field: str, right: object, protocol: str = "ip") -> Json:
    return {"match": {"op": "==", "left": {"payload": {"protocol": protocol, "field": field}},
                      "right": right}}


def _dev(key: str, name: str) -> Json:
    return {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": name}}


def _prefixes(cidrs: Iterable[str]) -> Json:
    elems: list[object] = []
    for cidr in sorted(set(cidrs)):
        addr, plen = cidr.split("/")
        elems.append({"prefix": {"addr": addr, "len": int(plen)}})
    return {"set": elems}


def compile_nat(gateway: str, floating: Iterable[FloatingMap], snat_ip: str | None,
                internal_cidrs: Iterable[str]) -> Json | None:
    """The NAT table of one router namespace; None when it has nothing to translate."""
    maps = sorted(set(floating))
    cidrs = sorted(set(internal_cidrs))
    if not maps and not (snat_ip and cidrs):
        return None
    tbl = {"family": FAMILY, "table": TABLE}
    cmds: list[Json] = [
        {"add": {"chain": {**tbl, "name": "dnat", "type": "nat", "hook": "prerouting",
                           "prio": -100, "policy": "accept"}}},
        {"add": {"chain": {**tbl, "name": "snat", "type": "nat", "hook": "postrouting",
                           "prio": 100, "policy": "accept"}}},
    ]
    v4 = {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}}
    for m in maps:
        cmds.append({"add": {"rule": {**tbl, "chain": "dnat", "expr": [
            v4, _dev("iifname", gateway), _match("daddr", m.floating_ip),
            {"dnat": {"family": "ip", "addr": m.fixed_ip}}]}}})
        cmds.append({"add": {"rule": {**tbl, "chain": "snat", "expr": [
            v4, _dev("oifname", gateway), _match("saddr", m.fixed_ip),
            {"snat": {"family": "ip", "addr": m.floating_ip}}]}}})
    if snat_ip and cidrs:
        cmds.append({"add": {"rule": {**tbl, "chain": "snat", "expr": [
            v4, _dev("oifname", gateway), _match("saddr", _prefixes(cidrs)),
            {"snat": {"family": "ip", "addr": snat_ip}}]}}})
    return seal(TABLE, cmds)


def plan(d: RoutingNs, a: RoutingNs) -> list[ApplyRuleset]:
    """No op when the kernel holds `d.nat` already; one atomic swap or a deletion otherwise."""
    if d.nat is None:
        if TABLE in a.nft_tables:
            return [ApplyRuleset(d.name, RulesetChange.DELETE, table=TABLE)]
        return []
    return plan_ruleset(d.name, d.nat, a.nat_digest)
