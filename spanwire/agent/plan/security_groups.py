"""Security groups and port security of one routing namespace, as one nftables `inet` table.

Pure: `compile_ruleset` turns ports and rules into a `Ruleset`, the whole
table as fragments; the agent applies what `plan_ruleset` derives from it with
`dataplane.nft`. Neutron semantics:

- stateful: `ct state established,related` is accepted before any port chain,
  so replies and running connections never depend on the current rules, and a
  rule update (one nft transaction) does not cut them; `ct state invalid` is
  dropped in every port chain;
- per secured port three chains: `<port>-s` (anti-spoofing, hook prerouting
  at raw priority, before conntrack so forged packets never create state),
  `<port>-o` (egress) and `<port>-i` (ingress), both default deny, jumping
  to one shared chain per group and direction (`grp-<group>-o`/`-i`, holding
  that group's rules once), so a rule costs one nft rule however many ports use its group;
- the base chains reach a port's chains through three named verdict maps
  (`spoof`, `egress`: iifname; `ingress`: oifname), so adding or removing a
  port adds or removes map elements and its own chains, nothing else;
- DHCP from the VM (udp 68→67) is always allowed, DHCP server replies from a VM
  (udp 67→68) always dropped; replies from our dnsmasq are accepted on output;
- remote groups are named sets `sg_<group>` holding member addresses, so a
  membership change is a set-element update, not a new rule set;
- a port with `port_security_enabled=False` gets no chains at all;
- IPv4 only: the testbed disables IPv6, so IPv6 rules are skipped and IPv6
  from a secured port is dropped by its anti-spoofing chain. ARP is not seen by
  the `inet` family; the routing namespace's permanent neighbour entries make
  ARP spoofing harmless there.

Names depend only on the object's own id (first 12 alphanumerics; a hash is
appended only when two ids here share them), so adding a port never renames
another's chains. Every fragment (a port, a group's direction, a set, the
skeleton) is digested from the inputs that determine it, and its nft commands
are compiled lazily and cached by those inputs: a namespace of 1000 ports where
one changed costs one port's compile. The table digest, `<full>-<shape>`
(without / with set elements), combines the fragments' digests and sits in a
meta rule's comment, so a restarted agent compares one short read.

`plan_ruleset` turns (desired, the kernel's digest, what this agent applied
last) into at most one transaction: nothing (digests equal), an INCREMENTAL
fragment diff, a SETS element rewrite, or a whole-table REPLACE.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from spanwire.agent import naming
from spanwire.model import Port, SecurityGroupRule

FAMILY = "inet"
META_CHAIN = "sw-meta"
DIGEST_TAG = "spanwire-sg "
MAPS = {"s": ("spoof", "iifname"), "o": ("egress", "iifname"), "i": ("ingress", "oifname")}
_PROTO = {"1": "icmp", "6": "tcp", "17": "udp"}
_SUFFIX = {"egress": "o", "ingress": "i"}
_CT = {"ct": {"key": "state"}}
_EST = {"match": {"op": "in", "left": _CT, "right": ["established", "related"]}}
_INVALID = {"match": {"op": "in", "left": _CT, "right": ["invalid"]}}
_V4 = {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}}
_RANK = {"set": 0, "group": 1, "port": 2, "skeleton": 3}  # creation order; deletion reversed
_CACHE = 1 << 14  # compiled fragments kept (a few KiB each)
Json = dict[str, Any]
# (ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote set name)
RuleKey = tuple[str, str | None, int | None, int | None, str | None, str | None]


class RulesetChange(enum.StrEnum):
    REPLACE = "replace"  # whole table swapped in one nft transaction
    INCREMENTAL = "incremental"  # only the fragments that differ from the applied table
    SETS = "sets"  # only remote-group memberships changed: set elements rewritten
    DELETE = "delete"  # no port needs filtering here any more


@dataclass(frozen=True)
class ApplyRuleset:
    """One atomic nft transaction on namespace `ns`; `payload` is the JSON to feed `nft -j -f -`.

    `ruleset`: the table the kernel holds once this op is applied (REPLACE,
    INCREMENTAL, SETS of a compiled `Ruleset`), for the agent to remember as
    applied; None for DELETE and for plain documents (NAT).
    """

    ns: str
    change: RulesetChange
    payload: str = ""
    table: str = "spanwire"
    ruleset: Ruleset | None = field(default=None, compare=False, repr=False)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _sha(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Fragment:
    """One independently replaceable part of the table, identified by `(kind, name)`.

    `inputs` determine its commands entirely (hashable; the cache key), and
    `digest` is derived from them; `elem_digest` (sets only) covers the set's
    elements, which `digest` leaves out so a membership change keeps the shape.
    """

    kind: str
    name: str
    inputs: tuple[Any, ...]
    digest: str
    elem_digest: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name


def _fragment(kind: str, name: str, inputs: tuple[Any, ...]) -> Fragment:
    return Fragment(kind, name, inputs, _sha(_fingerprint(), kind, name, repr(inputs)))


def _set_fragment(table: str, name: str, addresses: tuple[str, ...]) -> Fragment:
    """Its shape digest leaves the members out: a membership change keeps the table's shape."""
    return Fragment("set", name, (table, addresses), _sha(_fingerprint(), "set", name, table),
                    _sha(repr(addresses)))


@dataclass(frozen=True)
class Content:
    """A fragment's nft commands, each as canonical JSON text.

    `creates`: its chains, sets and maps; `rules`: (chain, add-rule command);
    `elements`: (map, key, add-element command) it puts into the skeleton's
    maps; `set_elems`: (set, elements) for in-place membership rewrites.
    """

    creates: tuple[str, ...] = ()
    chains: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    maps: tuple[str, ...] = ()
    rules: tuple[tuple[str, str], ...] = ()
    elements: tuple[tuple[str, str, str], ...] = ()
    set_elems: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def chain_rules(self, chain: str) -> list[str]:
        return [text for c, text in self.rules if c == chain]


@dataclass(frozen=True, eq=False)
class Ruleset:
    """The compiled table: fragments in creation order and the table digest.

    Equal when table and digest are equal (the digest covers every fragment).
    """

    table: str
    fragments: tuple[Fragment, ...] = field(repr=False)
    digest: str = ""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ruleset) and (self.table, self.digest) == (other.table,
                                                                             other.digest)

    def __hash__(self) -> int:
        return hash((self.table, self.digest))

    @functools.cached_property
    def by_key(self) -> dict[tuple[str, str], Fragment]:
        return {f.key: f for f in self.fragments}

    @property
    def shape(self) -> str:
        return self.digest.split("-")[-1]

    def render(self) -> str:
        """The whole-table transaction text for `nft -j -f -`, equal to `_canon(document())`.

        The table is (re)created from nothing in the same transaction, so
        applying it is atomic and leaves nothing stale behind.
        """
        t = {"family": FAMILY, "name": self.table}
        contents = [_content(f) for f in self.fragments]
        parts = [_canon({"metainfo": {"json_schema_version": 1}}),
                 _canon({"add": {"table": t}}), _canon({"delete": {"table": t}}),
                 _canon({"add": {"table": t}})]
        parts += [text for c in contents for text in c.creates]
        parts += [text for c in contents for _, text in c.rules]
        parts += [text for c in contents for _, _, text in c.elements]
        parts += [_canon({"add": {"chain": _ref(self.table, META_CHAIN)}}),
                  _canon(_meta_rule(self.table, self.digest))]
        return '{"nftables":[' + ",".join(parts) + "]}"

    def document(self) -> Json:
        """The whole-table nft JSON document (what REPLACE applies), as a dict."""
        doc: Json = json.loads(self.render())
        return doc


def _ref(table: str, name: str) -> Json:
    return {"family": FAMILY, "table": table, "name": name}


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


def _stable_names(ids: Iterable[str], width: int = 12) -> dict[str, str]:
    """id → its first `width` alphanumerics; ids sharing those get a hash of themselves appended.

    A name depends on no other id unless two collide (then only theirs change),
    which keeps other objects' chains untouched when one is added or removed.
    """
    by_prefix: dict[str, list[str]] = {}
    for i in sorted(set(ids)):
        compact = i.lower().replace("-", "")
        if not (compact.isascii() and compact.isalnum()):
            compact = re.sub(r"[^0-9a-z]", "", compact) or "x"
        by_prefix.setdefault(compact[:width], []).append(i)
    names: dict[str, str] = {}
    for prefix, same in by_prefix.items():
        for i in same:
            names[i] = prefix if len(same) == 1 else f"{prefix}-{_sha(i)[:8]}"
    return names


def _rule_key(rule: SecurityGroupRule, sets: Mapping[str, str]) -> RuleKey:
    remote_set = sets.get(rule.remote_group_id) if rule.remote_group_id else None
    return (rule.ethertype, rule.protocol, rule.port_range_min, rule.port_range_max,
            rule.remote_ip_prefix, remote_set)


def _rule_match(key: RuleKey, direction: str) -> list[Json] | None:
    """The nft match expressions of one rule, or None when it can match nothing here."""
    ethertype, protocol, lo, hi, prefix, remote_set = key
    if ethertype != "IPv4":
        return None  # IPv4-only data plane (see module docstring)
    remote = "saddr" if direction == "ingress" else "daddr"
    exprs: list[Json] = []
    if prefix:
        net = _v4(prefix)
        if net is None:
            return None
        if net.prefixlen:
            exprs.append(_m(_pl("ip", remote), _addr(net)))
    elif remote_set:
        exprs.append(_m(_pl("ip", remote), "@" + remote_set))
    if not exprs:
        exprs.append(_V4)
    proto = _PROTO.get(protocol or "", protocol)
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


def _span(address: str) -> tuple[int, int] | None:
    """First and last address of an IPv4 address or prefix as integers (None: not IPv4).

    Plain dotted quads (what ports have) skip `ipaddress`, which is slow at
    a thousand members; anything else goes through it, with its validation.
    """
    parts = address.split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and len(p) <= 3 and
                               (p == "0" or p[0] != "0") and int(p) < 256 for p in parts):
        value = int(parts[0]) << 24 | int(parts[1]) << 16 | int(parts[2]) << 8 | int(parts[3])
        return value, value
    net = _v4(address)
    return None if net is None else (int(net.network_address), int(net.broadcast_address))


def _quad(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def _members(addresses: Iterable[str]) -> list[Any]:
    """The fewest prefixes covering exactly the addresses (as `ipaddress.collapse_addresses`)."""
    merged: list[list[int]] = []
    for start, end in sorted(s for s in map(_span, addresses) if s is not None):
        if merged and start <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out: list[Any] = []
    for start, end in merged:
        while start <= end:
            size = start & -start if start else 1 << 32
            while size > end - start + 1:
                size >>= 1
            plen = 33 - size.bit_length()
            out.append(_quad(start) if plen == 32 else
                       {"prefix": {"addr": _quad(start), "len": plen}})
            start += size
    return out


def _spoof_rules(mac: str, ips: Iterable[str], pairs: Iterable[tuple[str, str | None]]
                 ) -> list[list[Json]]:
    """What a secured port may send: its MAC with its fixed IPs, plus allowed address pairs."""
    allowed: dict[str, list[ipaddress.IPv4Network]] = {}
    for ip in ips:
        net = _v4(ip)
        if net is not None:
            allowed.setdefault(mac, []).append(net)
    for ip, pair_mac in pairs:
        net = _v4(ip)
        if net is not None:
            allowed.setdefault(pair_mac or mac, []).append(net)
    out: list[list[Json]] = []
    for src_mac in sorted(allowed):
        for net in ipaddress.collapse_addresses(allowed[src_mac]):
            ip_match = [_m(_pl("ip", "saddr"), _addr(net))] if net.prefixlen else [_V4]
            out.append([_m(_pl("ether", "saddr"), src_mac), *ip_match, {"return": None}])
    dhcp_discover = [_m(_pl("ip", "saddr"), "0.0.0.0"), _m(_pl("udp", "sport"), 68),
                     _m(_pl("udp", "dport"), 67)]
    out.append([_m(_pl("ether", "saddr"), mac), *dhcp_discover, {"return": None}])
    out.append([{"drop": None}])
    return out


_DHCP_OUT = [_m(_pl("udp", "sport"), 67), _m(_pl("udp", "dport"), 68)]
_DHCP_IN = [_m(_pl("udp", "sport"), 68), _m(_pl("udp", "dport"), 67)]


def _chain_cmds(table: str, chains: Iterable[tuple[str, Json, list[list[Json]]]]
                ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(name, hook spec, rules) per chain → (create texts, names, (chain, rule text))."""
    creates, names, rules = [], [], []
    for name, hook, exprs in chains:
        creates.append(_canon({"add": {"chain": {**_ref(table, name), **hook}}}))
        names.append(name)
        rules += [(name, _canon({"add": {"rule": {"family": FAMILY, "table": table,
                                                  "chain": name, "expr": e}}}))
                  for e in exprs]
    return tuple(creates), tuple(names), tuple(rules)


def _compile_port(frag: Fragment) -> Content:
    table, tap, mac, ips, pairs, egress, ingress = frag.inputs
    name = frag.name
    creates, chains, rules = _chain_cmds(table, [
        (f"{name}-s", {}, _spoof_rules(mac, ips, pairs)),
        (f"{name}-o", {}, [[_INVALID, {"drop": None}], [*_DHCP_OUT, {"drop": None}],
                           [*_DHCP_IN, {"accept": None}],
                           *[[{"jump": {"target": g}}] for g in egress], [{"drop": None}]]),
        (f"{name}-i", {}, [[_INVALID, {"drop": None}],
                           *[[{"jump": {"target": g}}] for g in ingress], [{"drop": None}]]),
    ])
    elements = tuple((m, tap, _canon({"add": {"element": {
        **_ref(table, m), "elem": [[tap, {"jump": {"target": f"{name}-{s}"}}]]}}}))
        for s, (m, _) in MAPS.items())
    return Content(creates=creates, chains=chains, rules=rules, elements=elements)


def _compile_group(frag: Fragment) -> Content:
    """A group's rules of one direction: each compiled once, deduplicated, sorted."""
    table, direction, keys = frag.inputs
    by_text: dict[str, list[Json]] = {}
    for key in keys:
        match = _rule_match(key, direction)
        if match is not None:
            by_text[_canon(match)] = match
    if not by_text:
        return Content()
    exprs = [[*by_text[t], {"accept": None}] for t in sorted(by_text)]
    creates, chains, rules = _chain_cmds(table, [(frag.name, {}, exprs)])
    return Content(creates=creates, chains=chains, rules=rules)


def _compile_set(frag: Fragment) -> Content:
    table, addresses = frag.inputs
    elems = _members(addresses)
    spec = {**_ref(table, frag.name), "type": "ipv4_addr", "flags": ["interval"]}
    create = _canon({"add": {"set": {**spec, **({"elem": elems} if elems else {})}}})
    return Content(creates=(create,), sets=(frag.name,), set_elems=((frag.name, tuple(elems)),))


def _compile_skeleton(frag: Fragment) -> Content:
    """Base chains and verdict maps. Egress and ingress sit in separate base chains:
    an `accept` ends only its own base chain, so traffic a port may send still
    meets the ingress rules of the port it goes to (priority 10, after egress at 0)."""
    (table,) = frag.inputs

    def vmap(suffix: str) -> list[Json]:
        name, key = MAPS[suffix]
        return [{"vmap": {"key": {"meta": {"key": key}}, "data": "@" + name}}]

    est = [_EST, {"accept": None}]

    def base(hook: str, prio: int) -> Json:
        return {"type": "filter", "hook": hook, "prio": prio, "policy": "accept"}

    creates, chains, rules = _chain_cmds(table, [
        ("prerouting", base("prerouting", -300), [vmap("s")]),
        ("input", base("input", 0), [est, vmap("o")]),
        ("forward", base("forward", 0), [est, vmap("o")]),
        ("forward-in", base("forward", 10), [est, vmap("i")]),
        ("output", base("output", 0), [est, [*_DHCP_OUT, {"accept": None}], vmap("i")]),
    ])
    maps = tuple(_canon({"add": {"map": {**_ref(table, name), "type": "ifname",
                                         "map": "verdict"}}}) for name, _ in MAPS.values())
    return Content(creates=creates + maps, chains=chains,
                   maps=tuple(name for name, _ in MAPS.values()), rules=rules)


_COMPILERS = {"port": "_compile_port", "group": "_compile_group", "set": "_compile_set",
              "skeleton": "_compile_skeleton"}


@functools.lru_cache(maxsize=_CACHE)
def _content(frag: Fragment) -> Content:
    """A fragment's commands, compiled once per distinct inputs (looked up by name: patchable)."""
    compiler: Any = globals()[_COMPILERS[frag.kind]]
    content: Content = compiler(frag)
    return content


@functools.lru_cache(maxsize=1)
def _fingerprint() -> str:
    """A digest of what this compiler emits for a reference input of every fragment kind.

    Part of every fragment digest, so an agent whose compiler output changed
    (an upgrade) sees a different digest and rewrites the table, without
    anyone having to remember to bump a version.
    """
    ref = [
        Fragment("port", "p", ("t", "tapx", "fa:16:3e:00:00:01", ("10.0.0.2",),
                               (("10.1.0.0/24", None), ("10.0.0.9", "fa:16:3e:00:00:09")),
                               ("grp-g-o",), ("grp-g-i",)), ""),
        Fragment("group", "grp-g-i", ("t", "ingress", (
            ("IPv4", "tcp", 22, 23, None, "sg_g"), ("IPv4", "icmp", 8, 0, "10.0.0.0/8", None),
            ("IPv4", "132", None, None, None, None), ("IPv6", None, None, None, None, None))), ""),
        Fragment("set", "sg_g", ("t", ("10.0.0.2", "10.0.0.3", "10.2.0.0/16")), ""),
        Fragment("skeleton", "skeleton", ("t",), ""),
    ]
    compilers = [globals()[_COMPILERS[f.kind]] for f in ref]
    return _sha(*(repr(compile_(f)) for compile_, f in zip(compilers, ref, strict=True)))


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
) -> Ruleset:
    """The complete `table inet <table>` of one routing namespace, as fragments.

    `ports_here`: this node's ports of this network; `rules`: at least every
    rule of their groups (others are ignored); `group_members`: security group
    id → addresses of every port in the cloud that is in that group (fixed IPs
    and allowed-address-pair prefixes), used for remote-group rules. Cost: one
    short hash per port; commands are compiled only for fragments not seen before.
    """
    ports = _secured(ports_here)
    groups_here = {g for p in ports.values() for g in p.security_groups}
    live = [r for r in rules if r.security_group_id in groups_here]
    sets = {g: "sg_" + n for g, n in _stable_names(
        r.remote_group_id for r in live if r.remote_group_id and r.ethertype == "IPv4").items()}
    keys: dict[tuple[str, str], set[RuleKey]] = {}
    for r in live:
        keys.setdefault((r.security_group_id, r.direction), set()).add(_rule_key(r, sets))
    gnames = _stable_names(g for g, _ in keys)
    frags: list[Fragment] = []
    for gid in sorted(sets):
        addresses = tuple(sorted(set(group_members.get(gid, []))))
        frags.append(_set_fragment(table, sets[gid], addresses))
    gchain: dict[tuple[str, str], str] = {}
    for (gid, direction), ks in keys.items():
        name = f"grp-{gnames[gid]}-{_SUFFIX[direction]}"
        frag = _fragment("group", name, (table, direction, tuple(sorted(ks, key=repr))))
        if _content(frag).rules:
            frags.append(frag)
            gchain[(gid, direction)] = name
    pnames = _stable_names(ports)
    for pid, port in ports.items():
        groups = sorted(set(port.security_groups))
        inputs = (table, naming.tap(pid), port.mac_address,
                  tuple(sorted(f.ip_address for f in port.fixed_ips)),
                  tuple(sorted((p.ip_address, p.mac_address) for p in port.allowed_address_pairs)),
                  tuple(gchain[k] for k in ((g, "egress") for g in groups) if k in gchain),
                  tuple(gchain[k] for k in ((g, "ingress") for g in groups) if k in gchain))
        frags.append(_fragment("port", pnames[pid], inputs))
    frags.append(_fragment("skeleton", "skeleton", (table,)))
    frags.sort(key=lambda f: (_RANK[f.kind], f.name))
    shape = hashlib.sha256(table.encode())
    for f in frags:
        shape.update(f"{f.kind}\0{f.name}\0{f.digest}\0".encode())
    full = shape.copy()
    for f in frags:
        full.update(f.elem_digest.encode())
    return Ruleset(table, tuple(frags), full.hexdigest()[:32] + "-" + shape.hexdigest()[:32])


def seal(table: str, cmds: list[Json]) -> Json:
    """A whole-table document for `cmds` (chains, sets, rules of `table`), with its digest.

    For tables compiled as one piece (NAT). The table is (re)created from
    nothing in the same transaction, so applying the document is atomic; the
    digest rule lets a restarted agent tell, with one short read, that the
    kernel already holds exactly this document.
    """
    t = {"family": FAMILY, "name": table}
    head = [{"add": {"table": t}}, {"delete": {"table": t}}, {"add": {"table": t}}]
    meta = {"add": {"chain": _ref(table, META_CHAIN)}}
    doc = {"nftables": [{"metainfo": {"json_schema_version": 1}}, *head, *cmds, meta]}
    doc["nftables"].append(_meta_rule(table, ruleset_digest(doc)))
    return doc


def _meta_rule(table: str, digest: str) -> Json:
    """A never-jumped-to rule whose comment carries the digest the kernel state was built from."""
    return {"add": {"rule": {"family": FAMILY, "table": table, "chain": META_CHAIN,
                             "expr": [{"return": None}], "comment": DIGEST_TAG + digest}}}


def _is_meta(cmd: Json) -> bool:
    return cmd.get("add", {}).get("rule", {}).get("chain") == META_CHAIN


def ruleset_digest(doc: Json | Ruleset) -> str:
    """`<full>-<shape>`: digests of the table with and without set elements.
    Equal shapes mean only memberships differ. A `Ruleset` carries its own;
    for a plain document they are sha256 prefixes of it without its digest rule."""
    if isinstance(doc, Ruleset):
        return doc.digest
    cmds = [c for c in doc["nftables"] if not _is_meta(c)]
    sets = [c["add"]["set"] for c in cmds if "set" in c.get("add", {})]
    rest = hashlib.sha256(_canon([c for c in cmds if "set" not in c.get("add", {})]).encode())
    shape = rest.copy()
    shape.update(_canon([{k: v for k, v in s.items() if k != "elem"} for s in sets]).encode())
    full = shape.copy()
    full.update(_canon([s.get("elem", []) for s in sets]).encode())
    return full.hexdigest()[:32] + "-" + shape.hexdigest()[:32]


def _digest_of(doc: Json) -> str:
    """The digest `seal` embedded (not hashed twice), else computed."""
    last = doc["nftables"][-1]
    embedded = digest_from_comment(last["add"]["rule"].get("comment")) if _is_meta(last) else None
    return embedded or ruleset_digest(doc)


def _table_of(doc: Json) -> str:
    return next(c["add"]["table"]["name"] for c in doc["nftables"] if "table" in c.get("add", {}))


def render(doc: Json | Ruleset) -> str:
    """The exact bytes to pipe into `nft -j -f -` (canonical: equal docs, equal bytes)."""
    return doc.render() if isinstance(doc, Ruleset) else _canon(doc)


def _set_rewrite(table: str, name: str, elems: Iterable[Any]) -> list[Json]:
    out: list[Json] = [{"flush": {"set": _ref(table, name)}}]
    if members := list(elems):
        out.append({"add": {"element": {**_ref(table, name), "elem": members}}})
    return out


def _meta_update(table: str, digest: str) -> list[Json]:
    return [{"flush": {"chain": _ref(table, META_CHAIN)}}, _meta_rule(table, digest)]


def sets_update(doc: Json | Ruleset) -> Json:
    """One transaction rewriting every set's elements and the digest; rules untouched."""
    cmds: list[Json] = [{"metainfo": {"json_schema_version": 1}}]
    if isinstance(doc, Ruleset):
        for frag in doc.fragments:
            for name, elems in _content(frag).set_elems:
                cmds += _set_rewrite(doc.table, name, elems)
        return {"nftables": [*cmds, *_meta_update(doc.table, doc.digest)]}
    table = _table_of(doc)
    for cmd in doc["nftables"]:
        spec = cmd.get("add", {}).get("set")
        if spec is not None:
            cmds += _set_rewrite(table, spec["name"], spec.get("elem", []))
    return {"nftables": [*cmds, *_meta_update(table, _digest_of(doc))]}


def _remove(table: str, content: Content) -> list[str]:
    """Commands deleting a fragment's own objects (its map elements are gone already)."""
    out = [_canon({"flush": {"chain": _ref(table, c)}}) for c in content.chains]
    out += [_canon({"delete": {"chain": _ref(table, c)}}) for c in content.chains]
    out += [_canon({"delete": {"set": _ref(table, s)}}) for s in content.sets]
    out += [_canon({"delete": {"map": _ref(table, m)}}) for m in content.maps]
    return out


def _rewrite(table: str, old: Content, new: Content) -> list[str] | None:
    """Commands turning fragment content `old` into `new` in place; None if it cannot be."""
    if (old.chains, old.sets, old.maps) != (new.chains, new.sets, new.maps):
        return None
    out: list[str] = []
    for (name, elems), (_, before) in zip(new.set_elems, old.set_elems, strict=True):
        if elems != before:
            out += [_canon(c) for c in _set_rewrite(table, name, elems)]
    for chain in new.chains:
        rules = new.chain_rules(chain)
        if rules != old.chain_rules(chain):
            out += [_canon({"flush": {"chain": _ref(table, chain)}}), *rules]
    return out


def incremental(applied: Ruleset, desired: Ruleset) -> tuple[RulesetChange, str] | None:
    """One transaction turning the kernel's `applied` table into `desired`, fragment by fragment.

    Order: objects are created (sets, group chains, port chains) and changed
    ones rewritten in place before anything refers to them; then map elements
    of removed or changed ports are deleted and those of new ones added (their
    chains exist by then); then removed chains (ports before the group chains
    they jump to) and sets are flushed and deleted; finally the digest rule is
    rewritten. SETS when only set elements changed; None when the skeleton or
    table differ (a whole replacement is needed).
    """
    table = desired.table
    old, new = applied.by_key, desired.by_key
    skeleton = ("skeleton", "skeleton")
    if applied.table != table or skeleton not in old or \
            old[skeleton].digest != new[skeleton].digest:
        return None
    create: list[str] = []
    elem_del: list[tuple[str, str]] = []
    elem_add: list[str] = []
    only_sets = True
    for key, frag in new.items():
        before = old.get(key)
        if before is not None and (before.digest, before.elem_digest) == (frag.digest,
                                                                          frag.elem_digest):
            continue
        only_sets = only_sets and frag.kind == "set"
        content = _content(frag)
        if before is None:
            create += [*content.creates, *(text for _, text in content.rules)]
            elem_add += [text for _, _, text in content.elements]
            continue
        prior = _content(before)
        step = _rewrite(table, prior, content)
        if step is None:
            return None
        create += step
        if prior.elements != content.elements:
            gone, came = set(prior.elements), set(content.elements)
            elem_del += [(m, k) for m, k, t in prior.elements if (m, k, t) not in came]
            elem_add += [t for m, k, t in content.elements if (m, k, t) not in gone]
    removed = [frag for key, frag in old.items() if key not in new]
    only_sets = only_sets and all(f.kind == "set" for f in removed)
    drop: list[str] = []
    for frag in sorted(removed, key=lambda f: (-_RANK[f.kind], f.name)):
        content = _content(frag)
        elem_del += [(m, k) for m, k, _ in content.elements]
        drop += _remove(table, content)
    parts = [_canon({"metainfo": {"json_schema_version": 1}}), *create]
    parts += [_canon({"delete": {"element": {**_ref(table, m), "elem": [k]}}})
              for m, k in elem_del]
    parts += [*elem_add, *drop, *(_canon(c) for c in _meta_update(table, desired.digest))]
    kind = RulesetChange.SETS if only_sets else RulesetChange.INCREMENTAL
    return kind, '{"nftables":[' + ",".join(parts) + "]}"


def plan_ruleset(ns: str, desired: Json | Ruleset | None, actual_digest: str | None,
                 applied: Ruleset | None = None) -> list[ApplyRuleset]:
    """At most one transaction: none when the kernel already holds `desired` (hitless
    restart); the fragment diff when the kernel holds `applied` (what this agent
    wrote last); a set-element update when only memberships changed; otherwise
    one atomic table replacement."""
    if desired is None:
        return [] if actual_digest is None else [ApplyRuleset(ns, RulesetChange.DELETE)]
    if not isinstance(desired, Ruleset):
        table, want = _table_of(desired), _digest_of(desired)
        if actual_digest == want:
            return []
        if actual_digest and actual_digest.split("-")[-1] == want.split("-")[-1]:
            return [ApplyRuleset(ns, RulesetChange.SETS, render(sets_update(desired)), table)]
        return [ApplyRuleset(ns, RulesetChange.REPLACE, render(desired), table)]
    table = desired.table
    if actual_digest == desired.digest:
        return []
    if isinstance(applied, Ruleset) and actual_digest is not None and \
            applied.digest == actual_digest:
        step = incremental(applied, desired)
        if step is not None:
            return [ApplyRuleset(ns, step[0], step[1], table, desired)]
    if actual_digest and actual_digest.split("-")[-1] == desired.shape:
        return [ApplyRuleset(ns, RulesetChange.SETS, render(sets_update(desired)), table,
                             desired)]
    return [ApplyRuleset(ns, RulesetChange.REPLACE, desired.render(), table, desired)]


def digest_from_comment(comment: str | None) -> str | None:
    """The digest stored in the meta rule's comment (as read back by `dataplane.nft`)."""
    if comment and comment.startswith(DIGEST_TAG):
        return comment[len(DIGEST_TAG):]
    return None


__all__ = ["ApplyRuleset", "Fragment", "Ruleset", "RulesetChange", "compile_ruleset",
           "digest_from_comment", "incremental", "plan_ruleset", "render", "ruleset_digest",
           "seal", "sets_update"]
