"""Security groups and port security of one routing namespace, as one nftables JSON document.

Pure: `compile_ruleset` turns ports and rules into the whole `inet` table; the
agent applies it with `dataplane.nft`. Neutron semantics:

- stateful: `ct state established,related` is accepted before any port chain,
  so replies and running connections never depend on the current rules, and a
  rule update (an atomic table swap) does not cut them; `ct state invalid` is
  dropped in every port chain;
- per secured port three chains: `<port8>-s` (anti-spoofing, hook prerouting
  at raw priority, before conntrack so forged packets never create state),
  `<port8>-o` (egress) and `<port8>-i` (ingress), both default deny, jumping
  to one shared chain per group and direction (`grp-<id8>-o`/`-i`, holding
  that group's rules once), so a rule costs one nft rule however many ports use its group;
- DHCP from the VM (udp 68→67) is always allowed, DHCP server replies from a VM
  (udp 67→68) always dropped; replies from our dnsmasq are accepted on output;
- remote groups are named sets `sg_<id8>` holding member addresses, so a
  membership change is a set-element update, not a new rule set;
- a port with `port_security_enabled=False` gets no chains at all;
- IPv4 only: the testbed disables IPv6, so IPv6 rules are skipped and IPv6
  from a secured port is dropped by its anti-spoofing chain. ARP is not seen by
  the `inet` family; the routing namespace's permanent neighbour entries make
  ARP spoofing harmless there.

Output is deterministic (ports by id, rules and members sorted, duplicates
removed), so equal inputs give byte-equal JSON and equal digests. The agent:
`doc = compile_ruleset(...)`; `ops = plan_ruleset(ns, doc, nft.read_digest(ns))`;
per op `nft.apply(op.ns, op.payload)` (DELETE: `nft.delete_table(op.ns, op.table)`).
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from spanwire.agent import naming
from spanwire.model import Port, SecurityGroupRule

FAMILY = "inet"
META_CHAIN = "sw-meta"
DIGEST_TAG = "spanwire-sg "
_PROTO = {"1": "icmp", "6": "tcp", "17": "udp"}
_SUFFIX = {"egress": "o", "ingress": "i"}
_CT = {"ct": {"key": "state"}}
_EST = {"match": {"op": "in", "left": _CT, "right": ["established", "related"]}}
_INVALID = {"match": {"op": "in", "left": _CT, "right": ["invalid"]}}
_V4 = {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}}
Json = dict[str, Any]


class RulesetChange(enum.StrEnum):
    REPLACE = "replace"  # whole table swapped in one nft transaction
    SETS = "sets"  # only remote-group memberships changed: set elements rewritten
    DELETE = "delete"  # no port needs filtering here any more


@dataclass(frozen=True)
class ApplyRuleset:
    """One atomic nft transaction on namespace `ns`; `payload` is the JSON to feed `nft -j -f -`."""

    ns: str
    change: RulesetChange
    payload: str = ""
    table: str = "spanwire"


def _m(left: Json, right: Any, op: str = "==") -> Json:
    return {"match": {"op": op, "left": left, "right": right}}


def _pl(protocol: str, field: str) -> Json:
    return {"payload": {"protocol": protocol, "field": field}}


def _addr(net: ipaddress.IPv4Network) -> Any:
    if net.prefixlen == 32:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _v4(value: str) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    return net if isinstance(net, ipaddress.IPv4Network) else None


def _short(ids: Iterable[str], width: int = 8) -> dict[str, str]:
    """Shortest id prefixes (at least `width`) that are unique among `ids`."""
    compact = {i: "".join(c for c in i.lower() if c.isalnum()) or "x" for i in sorted(set(ids))}
    longest = max((len(c) for c in compact.values()), default=0)
    while width < longest and len({c[:width] for c in compact.values()}) < len(compact):
        width += 1
    names: dict[str, str] = {}
    for n, (i, c) in enumerate(compact.items()):
        name = c[:width]
        names[i] = name if name not in names.values() else f"{name}{n}"
    return names


def _rule_match(rule: SecurityGroupRule, sets: Mapping[str, str]) -> list[Json] | None:
    """The nft match expressions of one rule, or None when it can match nothing here."""
    if rule.ethertype != "IPv4":
        return None  # IPv4-only data plane (see module docstring)
    remote = "saddr" if rule.direction == "ingress" else "daddr"
    exprs: list[Json] = []
    if rule.remote_ip_prefix:
        net = _v4(rule.remote_ip_prefix)
        if net is None:
            return None
        if net.prefixlen:
            exprs.append(_m(_pl("ip", remote), _addr(net)))
    elif rule.remote_group_id:
        exprs.append(_m(_pl("ip", remote), "@" + sets[rule.remote_group_id]))
    if not exprs:
        exprs.append(_V4)
    proto = _PROTO.get(rule.protocol or "", rule.protocol)
    lo, hi = rule.port_range_min, rule.port_range_max
    if proto in ("tcp", "udp") and lo is not None:
        hi = lo if hi is None else hi
        exprs.append(_m(_pl(proto, "dport"), lo if lo == hi else {"range": [lo, hi]}))
    elif proto == "icmp" and lo is not None:
        if lo > 255 or (hi is not None and hi > 255):
            return None  # not an ICMP type/code; Neutron's API refuses these
        exprs.append(_m(_pl("icmp", "type"), lo))
        if hi is not None:
            exprs.append(_m(_pl("icmp", "code"), hi))
    elif proto is not None:
        exprs.append(_m({"meta": {"key": "l4proto"}}, int(proto) if proto.isdigit() else proto))
    return exprs


def _members(addresses: Iterable[str]) -> list[Any]:
    nets = [n for n in (_v4(a) for a in addresses) if n is not None]
    return [_addr(n) for n in ipaddress.collapse_addresses(nets)]


def _spoof_rules(port: Port) -> list[list[Json]]:
    """What a secured port may send: its MAC with its fixed IPs, plus allowed address pairs."""
    allowed: dict[str, list[ipaddress.IPv4Network]] = {}
    for fixed in port.fixed_ips:
        allowed.setdefault(port.mac_address, []).append(ipaddress.IPv4Network(fixed.ip_address))
    for pair in port.allowed_address_pairs:
        net = _v4(pair.ip_address)
        if net is not None:
            allowed.setdefault(pair.mac_address or port.mac_address, []).append(net)
    out: list[list[Json]] = []
    for mac in sorted(allowed):
        for net in ipaddress.collapse_addresses(allowed[mac]):
            ip = [_m(_pl("ip", "saddr"), _addr(net))] if net.prefixlen else [_V4]
            out.append([_m(_pl("ether", "saddr"), mac), *ip, {"return": None}])
    dhcp_discover = [_m(_pl("ip", "saddr"), "0.0.0.0"), _m(_pl("udp", "sport"), 68),
                     _m(_pl("udp", "dport"), 67)]
    out.append([_m(_pl("ether", "saddr"), port.mac_address), *dhcp_discover, {"return": None}])
    out.append([{"drop": None}])
    return out


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _group_chains(rules: Iterable[SecurityGroupRule], sets: Mapping[str, str]
                  ) -> dict[tuple[str, str], list[list[Json]]]:
    """(group, direction) → its rules' matches, each compiled once, deduplicated, sorted."""
    out: dict[tuple[str, str], dict[str, list[Json]]] = {}
    for rule in rules:
        match = _rule_match(rule, sets)
        if match is not None:
            out.setdefault((rule.security_group_id, rule.direction), {})[_canon(match)] = match
    return {key: [by[k] for k in sorted(by)] for key, by in out.items()}


def _secured(ports_here: Iterable[Port]) -> dict[str, Port]:
    ports: dict[str, Port] = {}
    taps: set[str] = set()
    for port in sorted(ports_here, key=lambda p: p.id):
        if port.port_security_enabled and naming.tap(port.id) not in taps:
            ports[port.id] = port  # a repeated tap name could not exist in the kernel anyway
            taps.add(naming.tap(port.id))
    return ports


def compile_ruleset(
    ports_here: list[Port],
    rules: list[SecurityGroupRule],
    group_members: Mapping[str, list[str]],
    table: str = "spanwire",
) -> Json:
    """The complete `table inet <table>` of one routing namespace, as nft JSON.

    `ports_here`: this node's ports of this network; `rules`: at least every
    rule of their groups (others are ignored); `group_members`: security group
    id → addresses of every port in the cloud that is in that group (fixed IPs
    and allowed-address-pair prefixes), used for remote-group rules.
    """
    ports = _secured(ports_here)
    groups_here = {g for p in ports.values() for g in p.security_groups}
    live = [r for r in rules if r.security_group_id in groups_here]
    sets = {g: "sg_" + s for g, s in _short(
        r.remote_group_id for r in live if r.remote_group_id and r.ethertype == "IPv4").items()}
    compiled = _group_chains(live, sets)
    gchain = {g: "grp-" + s for g, s in _short(g for g, _ in compiled).items()}
    chains = _short(ports)
    tbl = {"family": FAMILY, "table": table}
    body: list[Json] = []
    rule_adds: list[Json] = []

    def add_chain(name: str, exprs_list: Iterable[list[Json]], **hook: Any) -> None:
        body.append({"add": {"chain": {**tbl, "name": name, **hook}}})
        rule_adds.extend({"add": {"rule": {**tbl, "chain": name, "expr": e}}} for e in exprs_list)

    for gid in sorted(sets):
        elems = _members(group_members.get(gid, []))
        spec = {**tbl, "name": sets[gid], "type": "ipv4_addr", "flags": ["interval"]}
        body.append({"add": {"set": {**spec, **({"elem": elems} if elems else {})}}})
    for (gid, direction), matches in sorted(compiled.items()):
        add_chain(f"{gchain[gid]}-{_SUFFIX[direction]}", [[*m, {"accept": None}] for m in matches])
    dhcp_out = [_m(_pl("udp", "sport"), 67), _m(_pl("udp", "dport"), 68)]
    dhcp_in = [_m(_pl("udp", "sport"), 68), _m(_pl("udp", "dport"), 67)]
    for pid, port in ports.items():
        def jumps(direction: str, port: Port = port) -> list[list[Json]]:
            return [[{"jump": {"target": f"{gchain[g]}-{_SUFFIX[direction]}"}}]
                    for g in sorted(set(port.security_groups)) if (g, direction) in compiled]
        add_chain(f"{chains[pid]}-s", _spoof_rules(port))
        add_chain(f"{chains[pid]}-o", [[_INVALID, {"drop": None}], [*dhcp_out, {"drop": None}],
                                       [*dhcp_in, {"accept": None}], *jumps("egress"),
                                       [{"drop": None}]])
        add_chain(f"{chains[pid]}-i", [[_INVALID, {"drop": None}], *jumps("ingress"),
                                       [{"drop": None}]])

    def vmap(key: str, suffix: str) -> list[list[Json]]:
        pairs = [[naming.tap(pid), {"jump": {"target": f"{chains[pid]}-{suffix}"}}]
                 for pid in ports]
        vm = {"vmap": {"key": {"meta": {"key": key}}, "data": {"set": pairs}}}
        return [[vm]] if pairs else []

    # Egress and ingress sit in separate base chains: an `accept` ends only its
    # own base chain, so traffic a port may send still meets the ingress rules
    # of the port it goes to (priority 10, after egress at 0).
    est = [_EST, {"accept": None}]
    for name, hook, prio, hook_rules in (
        ("prerouting", "prerouting", -300, vmap("iifname", "s")),
        ("input", "input", 0, [est, *vmap("iifname", "o")]),
        ("forward", "forward", 0, [est, *vmap("iifname", "o")]),
        ("forward-in", "forward", 10, [est, *vmap("oifname", "i")]),
        ("output", "output", 0, [est, [*dhcp_out, {"accept": None}], *vmap("oifname", "i")]),
    ):
        add_chain(name, hook_rules, type="filter", hook=hook, prio=prio, policy="accept")
    return seal(table, [*body, *rule_adds])


def seal(table: str, cmds: list[Json]) -> Json:
    """The whole-table document for `cmds` (chains, sets, rules of `table`), with its digest.

    The table is (re)created from nothing in the same transaction, so applying
    the document is atomic; the digest rule lets a restarted agent tell, with
    one short read, that the kernel already holds exactly this document.
    """
    t = {"family": FAMILY, "name": table}
    head = [{"add": {"table": t}}, {"delete": {"table": t}}, {"add": {"table": t}}]
    meta = {"add": {"chain": {"family": FAMILY, "table": table, "name": META_CHAIN}}}
    doc = {"nftables": [{"metainfo": {"json_schema_version": 1}}, *head, *cmds, meta]}
    doc["nftables"].append(_meta_rule(table, ruleset_digest(doc)))
    return doc


def _meta_rule(table: str, digest: str) -> Json:
    """A never-jumped-to rule whose comment carries the digest the kernel state was built from."""
    return {"add": {"rule": {"family": FAMILY, "table": table, "chain": META_CHAIN,
                             "expr": [{"return": None}], "comment": DIGEST_TAG + digest}}}


def _is_meta(cmd: Json) -> bool:
    return cmd.get("add", {}).get("rule", {}).get("chain") == META_CHAIN


def ruleset_digest(doc: Json) -> str:
    """`<full>-<shape>`: sha256 prefixes of the document without its digest rule,
    with and without set elements. Equal shapes mean only memberships differ."""
    cmds = [c for c in doc["nftables"] if not _is_meta(c)]
    sets = [c["add"]["set"] for c in cmds if "set" in c.get("add", {})]
    rest = hashlib.sha256(_canon([c for c in cmds if "set" not in c.get("add", {})]).encode())
    shape = rest.copy()
    shape.update(_canon([{k: v for k, v in s.items() if k != "elem"} for s in sets]).encode())
    full = shape.copy()
    full.update(_canon([s.get("elem", []) for s in sets]).encode())
    return full.hexdigest()[:32] + "-" + shape.hexdigest()[:32]


def _digest_of(doc: Json) -> str:
    """The digest `compile_ruleset` embedded (not hashed twice), else computed."""
    last = doc["nftables"][-1]
    embedded = digest_from_comment(last["add"]["rule"].get("comment")) if _is_meta(last) else None
    return embedded or ruleset_digest(doc)


def _table_of(doc: Json) -> str:
    return next(c["add"]["table"]["name"] for c in doc["nftables"] if "table" in c.get("add", {}))


def render(doc: Json) -> str:
    """The exact bytes to pipe into `nft -j -f -` (canonical: equal docs, equal bytes)."""
    return _canon(doc)


def sets_update(doc: Json) -> Json:
    """One transaction rewriting every set's elements and the digest; rules untouched."""
    cmds: list[Json] = []
    table = _table_of(doc)
    for cmd in doc["nftables"]:
        spec = cmd.get("add", {}).get("set")
        if spec is None:
            continue
        ref = {k: spec[k] for k in ("family", "table", "name")}
        cmds.append({"flush": {"set": ref}})
        if spec.get("elem"):
            cmds.append({"add": {"element": {**ref, "elem": spec["elem"]}}})
    meta = {"family": FAMILY, "table": table, "name": META_CHAIN}
    cmds += [{"flush": {"chain": meta}}, _meta_rule(table, _digest_of(doc))]
    return {"nftables": [{"metainfo": {"json_schema_version": 1}}, *cmds]}


def plan_ruleset(ns: str, desired: Json | None, actual_digest: str | None) -> list[ApplyRuleset]:
    """No op when the kernel already holds `desired` (hitless restart); a set-element
    update when only memberships changed; otherwise one atomic table replacement."""
    if desired is None:
        return [] if actual_digest is None else [ApplyRuleset(ns, RulesetChange.DELETE)]
    table = _table_of(desired)
    want = _digest_of(desired)
    if actual_digest == want:
        return []
    if actual_digest and actual_digest.split("-")[-1] == want.split("-")[-1]:
        return [ApplyRuleset(ns, RulesetChange.SETS, render(sets_update(desired)), table)]
    return [ApplyRuleset(ns, RulesetChange.REPLACE, render(desired), table)]


def digest_from_comment(comment: str | None) -> str | None:
    """The digest stored in the meta rule's comment (as read back by `dataplane.nft`)."""
    if comment and comment.startswith(DIGEST_TAG):
        return comment[len(DIGEST_TAG):]
    return None


__all__ = ["ApplyRuleset", "RulesetChange", "compile_ruleset", "digest_from_comment",
           "plan_ruleset", "render", "ruleset_digest", "seal", "sets_update"]
