"""Security groups and port security of one routing namespace, as one nftables `inet` table.

Pure: `compile_ruleset` turns ports and rules into a `Ruleset`, the whole
table as fragments; the agent applies what `nft_table.plan_ruleset` derives
from it with `dataplane.nft`. Neutron semantics:

- stateful: `ct state established,related` is accepted before any port chain,
  so replies and running connections never depend on the current rules, and a
  rule update (one nft transaction) does not cut them; `ct state invalid` is
  dropped at the head of every group-set chain;
- per secured port one chain of its own, `<port>-s` (anti-spoofing, hook
  prerouting at raw priority, before conntrack so forged packets never
  create state); its egress and ingress are one shared chain per group set
  and direction (`grp-<group>-o`/`-i` for a port in one group,
  `grp-<group>_<group>...-o` for several: the union of their rules;
  `grp-no-group-o`/`-i` for none), default deny, so a rule costs one nft
  rule however many ports use its group (or set of groups), and a port adds
  one chain, not three (nft reads every chain of the table into its cache
  before each transaction: a port's filtering goes in faster with fewer);
- allow is `return`, deny is `drop`: no port or group chain accepts. A
  forwarded packet crosses one `forward` base chain (established accept, the
  egress map on iifname, the ingress map on oifname), and a new flow between
  two ports of this namespace must pass the sender's egress rules *and* the
  receiver's ingress rules there; an `accept` in the egress check would end
  the base chain and skip the ingress one. So a group chain returns on the
  first matching rule and drops at its end, and the map `jump`s to it, so
  that return lands back in the base chain (one base chain per packet, not
  one per direction: established traffic costs one `ct state` check);
- the base chains reach a port's chains through three named verdict maps
  (`spoof`, `egress`: iifname; `ingress`: oifname), so adding or removing a
  port adds or removes map elements and its own chain, nothing else;
- DHCP from the VM (udp 68→67) is always allowed, DHCP server replies from a VM
  (udp 67→68) always dropped; replies from our dnsmasq are accepted on output;
- remote groups are named sets `sg_<group>` holding member addresses, so a
  membership change is a set-element update, not a new rule set (`sgn_<group>`,
  an interval set, when a member is a prefix);
- a port with `port_security_enabled=False` gets no chains at all;
- IPv4 only: the testbed disables IPv6, so IPv6 rules are skipped and IPv6
  from a secured port is dropped by its anti-spoofing chain. ARP is not seen by
  the `inet` family; the routing namespace's permanent neighbour entries make
  ARP spoofing harmless there.

Names depend only on the object's own id (first 12 alphanumerics; a hash is
appended only when two ids here share them), so adding a port never renames
another's chains. Every fragment (a port, a group's direction, a set, the
skeleton) is digested from the inputs that determine it, and its nft commands
are compiled lazily and cached by those inputs (`nft_table.compiled`). The
table digest, `<full>-<shape>` (without / with set elements), combines the
fragments' digests.

The generic machinery (digests, whole-table and incremental transactions,
`plan_ruleset`) lives in `nft_table`; its names are re-exported here.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import ipaddress
import operator
import re
from collections.abc import Iterable, Mapping
from typing import Any

from spanwire.agent import memo, naming
from spanwire.agent.plan.nft_table import (
    DIGEST_TAG,
    FAMILY,
    META_CHAIN,
    ApplyRuleset,
    Content,
    Fragment,
    Json,
    Ruleset,
    RulesetChange,
    canon,
    compile_fragment,
    compiled,
    digest_from_comment,
    incremental,
    plan_ruleset,
    ref,
    register,
    render,
    ruleset_digest,
    seal,
    sets_update,
    sha,
)
from spanwire.model import Port, SecurityGroupRule

MAPS = {"s": ("spoof", "iifname"), "o": ("egress", "iifname"), "i": ("ingress", "oifname")}
_PROTO = {"1": "icmp", "6": "tcp", "17": "udp"}
_SUFFIX = {"egress": "o", "ingress": "i"}
_CT = {"ct": {"key": "state"}}
_EST = {"match": {"op": "in", "left": _CT, "right": ["established", "related"]}}
_INVALID = {"match": {"op": "in", "left": _CT, "right": ["invalid"]}}
_V4 = {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}}
# (ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote set name)
RuleKey = tuple[str, str | None, int | None, int | None, str | None, str | None]


def _fragment(kind: str, name: str, inputs: tuple[Any, ...]) -> Fragment:
    return _fragment_for(_fingerprint(), kind, name, inputs)


@functools.lru_cache(maxsize=1 << 16)
def _fragment_for(fingerprint: str, kind: str, name: str, inputs: tuple[Any, ...]) -> Fragment:
    """Remembered: a namespace with a thousand ports recompiles its table on every
    port event, and all but one of the port fragments are the same as last time
    (hashing their inputs is a tenth of the cost of digesting them again). Keyed
    by the compiler's fingerprint too, so a changed compiler is never answered
    from memory."""
    return Fragment(kind, name, inputs, sha(fingerprint, kind, name, repr(inputs)))


def _set_fragment(table: str, name: str, addresses: tuple[str, ...]) -> Fragment:
    """Its shape digest leaves the members out: a membership change keeps the table's shape."""
    return _set_fragment_for(_fingerprint(), table, name, addresses)


@functools.lru_cache(maxsize=1 << 10)
def _set_fragment_for(fingerprint: str, table: str, name: str, addresses: tuple[str, ...]
                      ) -> Fragment:
    """Remembered (a thousand members cost a repr and a hash to digest again), keyed by the
    compiler's fingerprint like `_fragment_for`."""
    interval = _needs_interval(addresses)
    return Fragment("set", name, (table, addresses, interval),
                    sha(fingerprint, "set", name, table, str(interval)), sha(repr(addresses)))


@functools.lru_cache(maxsize=1 << 10)
def _needs_interval(addresses: tuple[str, ...]) -> bool:
    """Whether a member is a prefix (an allowed address pair can be): only then is the set an
    interval set. nft fetches every element of an interval set before it changes any set of
    the table (3 ms of a port's transaction with a thousand members), not so for plain ones."""
    return any(span is not None and span[0] != span[1] for span in map(_span, addresses))


def _set_name(stable: str, addresses: tuple[str, ...]) -> str:
    """`sg_<group>`, or `sgn_<group>` for an interval set: the kind cannot change in place,
    so a set that becomes one is a new set (created, its rules re-pointed, the old deleted)."""
    return ("sgn_" if _needs_interval(addresses) else "sg_") + stable


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
    return _named({i: _compact(i)[:width] for i in set(ids)})


def _named(prefixes: dict[str, str]) -> dict[str, str]:
    """id → its prefix, with a hash of the id appended where prefixes collide."""
    counts = collections.Counter(prefixes.values())
    if len(counts) == len(prefixes):
        return prefixes  # no collision: the common case, no per-id work left
    return {i: p if counts[p] == 1 else f"{p}-{sha(i)[:8]}" for i, p in prefixes.items()}


@functools.lru_cache(maxsize=1 << 16)
def _compact(i: str) -> str:
    compact = i.lower().replace("-", "")
    if not (compact.isascii() and compact.isalnum()):
        compact = re.sub(r"[^0-9a-z]", "", compact) or "x"
    return compact


def _group_set_name(names: list[str], suffix: str) -> str:
    """`grp-<name>-<suffix>` of a group set: its groups' stable names (sorted, `_`-joined),
    or a digest of them when that gets long; so it depends on those groups only."""
    # No group: DHCP only. "no-group" is no group's name (those are alphanumeric, or end in
    # a hex hash after their dash).
    joined = "_".join(sorted(names)) or "no-group"
    if len(joined) > 64:
        joined = "h" + sha(joined)[:16]
    return f"grp-{joined}-{suffix}"


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


@functools.lru_cache(maxsize=1 << 17)
def _span(address: str) -> tuple[int, int] | None:
    """First and last address of an IPv4 address or prefix as integers (None: not IPv4).

    Plain dotted quads (what ports have) skip `ipaddress`, which is slow at
    a thousand members; anything else goes through it, with its validation.
    Remembered: a membership change recompiles sets of a thousand members.
    """
    parts = address.split(".")
    if len(parts) == 4 and all(p.isdigit() and p.isascii() and len(p) <= 3 and
                               (p == "0" or p[0] != "0") and int(p) < 256 for p in parts):
        value = int(parts[0]) << 24 | int(parts[1]) << 16 | int(parts[2]) << 8 | int(parts[3])
        return value, value
    net = _v4(address)
    return None if net is None else (int(net.network_address), int(net.broadcast_address))


@functools.lru_cache(maxsize=1 << 17)
def _quad(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def _members(addresses: Iterable[str]) -> list[Any]:
    """Prefixes covering exactly the addresses: overlapping ones merged (an interval
    set refuses overlaps), adjacent ones kept apart.

    Apart so that a new member is one added element and the others stay as they
    are (merging it with a neighbour into a wider prefix would replace that
    neighbour's element too): a membership change is then the smallest delta.
    """
    spans = sorted(s for s in map(_span, addresses) if s is not None)
    if all(start == end for start, end in spans):
        # Plain addresses only (what ports have): nothing overlaps but duplicates.
        return [_quad(start) for start in sorted({start for start, _ in spans})]
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
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
        creates.append(canon({"add": {"chain": {**ref(table, name), **hook}}}))
        names.append(name)
        rules += [(name, canon({"add": {"rule": {"family": FAMILY, "table": table,
                                                  "chain": name, "expr": e}}}))
                  for e in exprs]
    return tuple(creates), tuple(names), tuple(rules)


def _compile_port(frag: Fragment) -> Content:
    """One chain of its own (anti-spoofing: it depends on the port's MAC and addresses) and
    the three map elements; egress and ingress go straight to its group set's chains.

    Not a chain per direction that jumps on to the group set's: those chains
    were the same for every port of a group set but for their name, and each
    one is a chain that nft fetches into its cache before every transaction
    (a thousand ports' filtering costs 3 ms to change with one chain each,
    against 10 ms with three)."""
    table, tap, mac, ips, pairs, egress, ingress = frag.inputs
    name = frag.name
    creates, chains, rules = _chain_cmds(table, [(f"{name}-s", {}, _spoof_rules(mac, ips, pairs))])
    targets = {"s": f"{name}-s", "o": egress, "i": ingress}
    elements = tuple((m, tap, canon({"add": {"element": {
        **ref(table, m), "elem": [[tap, {"jump": {"target": targets[s]}}]]}}}))
        for s, (m, _) in MAPS.items())
    return Content(creates=creates, chains=chains, rules=rules, elements=elements)


def _compile_group(frag: Fragment) -> Content:
    """What every port of a group set passes through in one direction: invalid state
    dropped, DHCP (client allowed, server denied, egress only), then the group set's rules
    (each compiled once, deduplicated, sorted), each returning on a match, then drop. Reached
    by `jump` from the base chain's map: its return lets the base chain go on to the next
    check, its drop denies."""
    table, direction, keys = frag.inputs
    by_text: dict[str, list[Json]] = {}
    for key in keys:
        match = _rule_match(key, direction)
        if match is not None:
            by_text[canon(match)] = match
    head = [[_INVALID, {"drop": None}]]
    if direction == "egress":
        head += [[*_DHCP_OUT, {"drop": None}], [*_DHCP_IN, {"return": None}]]
    exprs = [*head, *([*by_text[t], {"return": None}] for t in sorted(by_text)),
             [{"drop": None}]]
    creates, chains, rules = _chain_cmds(table, [(frag.name, {}, exprs)])
    return Content(creates=creates, chains=chains, rules=rules)


def _compile_set(frag: Fragment) -> Content:
    table, addresses, interval = frag.inputs
    elems = _members(addresses)
    spec = {**ref(table, frag.name), "type": "ipv4_addr",
            **({"flags": ["interval"]} if interval else {})}
    create = canon({"add": {"set": {**spec, **({"elem": elems} if elems else {})}}})
    return Content(creates=(create,), sets=(frag.name,), set_elems=((frag.name, tuple(elems)),))


def _compile_skeleton(frag: Fragment) -> Content:
    """Base chains and verdict maps. One `forward` chain checks the sending port's egress
    and then the receiving port's ingress: their chains return on allow (see the module
    docstring), so both checks run for a new flow between two ports of this namespace."""
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
        ("forward", base("forward", 0), [est, vmap("o"), vmap("i")]),
        ("output", base("output", 0), [est, [*_DHCP_OUT, {"accept": None}], vmap("i")]),
    ])
    maps = tuple(canon({"add": {"map": {**ref(table, name), "type": "ifname",
                                         "map": "verdict"}}}) for name, _ in MAPS.values())
    return Content(creates=creates + maps, chains=chains,
                   maps=tuple(name for name, _ in MAPS.values()), rules=rules)



@functools.lru_cache(maxsize=1)
def _fingerprint() -> str:
    """A digest of what this compiler emits for a reference input of every fragment kind.

    Part of every fragment digest, so an agent whose compiler output changed
    (an upgrade) sees a different digest and rewrites the table, without
    anyone having to remember to bump a version.
    """
    samples = [
        Fragment("port", "p", ("t", "tapx", "fa:16:3e:00:00:01", ("10.0.0.2",),
                               (("10.1.0.0/24", None), ("10.0.0.9", "fa:16:3e:00:00:09")),
                               "grp-g-o", None), ""),
        Fragment("group", "grp-g-i", ("t", "ingress", (
            ("IPv4", "tcp", 22, 23, None, "sg_g"), ("IPv4", "icmp", 8, 0, "10.0.0.0/8", None),
            ("IPv4", "132", None, None, None, None), ("IPv6", None, None, None, None, None))), ""),
        Fragment("set", "sgn_g", ("t", ("10.0.0.2", "10.0.0.3", "10.2.0.0/16"), True), ""),
        Fragment("set", "sg_h", ("t", ("10.0.0.2", "10.0.0.3"), False), ""),
        Fragment("skeleton", "skeleton", ("t",), ""),
    ]
    return sha(*(repr(compile_fragment(f)) for f in samples))


class _PortView:
    """What the compiler reads from one port, derived once per port object (see `agent.memo`),
    and the port's fragment as last compiled (a port's chains depend on its name here and
    on its group set's chains too, so that is checked before it is reused)."""

    __slots__ = ("compiled", "group_set", "ips", "mac", "pairs", "prefix", "secured", "tap")

    def __init__(self, port: Port) -> None:
        self.tap = naming.tap(port.id)
        self.secured = port.port_security_enabled
        self.group_set = tuple(sorted(set(port.security_groups)))
        self.ips = tuple(sorted(f.ip_address for f in port.fixed_ips))
        self.pairs = tuple(sorted((p.ip_address, p.mac_address)
                                  for p in port.allowed_address_pairs))
        self.mac = port.mac_address
        self.prefix = _compact(port.id)[:12]  # its chains' name unless another port shares it
        self.compiled: tuple[tuple[str, ...], Fragment] | None = None

    def fragment(self, table: str, name: str, egress: str, ingress: str,
                 fingerprint: str) -> Fragment:
        context = (table, name, egress, ingress, fingerprint)
        if self.compiled is None or self.compiled[0] != context:
            self.compiled = (context, _fragment("port", name, (
                table, self.tap, self.mac, self.ips, self.pairs, egress, ingress)))
        return self.compiled[1]


_VIEWS: memo.IdentityMemo[_PortView] = memo.IdentityMemo()


def _secured(ports_here: Iterable[Port]) -> dict[str, _PortView]:
    ports: dict[str, _PortView] = {}
    taps: set[str] = set()
    for port in sorted(ports_here, key=operator.attrgetter("id")):
        view = _VIEWS.get(port.id, port, None, _PortView, port)
        if view.secured and view.tap not in taps:
            ports[port.id] = view  # a repeated tap name could not exist in the kernel anyway
            taps.add(view.tap)
    return ports


class SortedMembers(Mapping[str, tuple[str, ...]]):
    """Group members whose addresses are kept sorted and unique already (the agent's
    `security.Membership` sorts a group once per change of its members): the
    compiler then does not sort a thousand addresses again on every pass."""


def _sorted_members(group_members: Mapping[str, Iterable[str]], group: str) -> tuple[str, ...]:
    members = group_members.get(group, ())
    if isinstance(group_members, SortedMembers):
        return members  # type: ignore[return-value]
    return tuple(sorted(set(members)))


def compile_ruleset(
    ports_here: list[Port],
    rules: Iterable[SecurityGroupRule] | Mapping[str, Iterable[SecurityGroupRule]],
    group_members: Mapping[str, Iterable[str]],
    table: str = "spanwire",
) -> Ruleset:
    """The complete `table inet <table>` of one routing namespace, as fragments.

    `ports_here`: this node's ports of this network; `rules`: at least every
    rule of their groups (others are ignored), or the rules by group id;
    `group_members`: security group id → addresses of every port in the cloud
    that is in that group (fixed IPs and allowed-address-pair prefixes), used
    for remote-group rules. Cost: a few dictionary lookups per port (its
    fragment is remembered against the port object, see `agent.memo`);
    commands are compiled only for fragments not seen before.
    """
    ports = _secured(ports_here)
    groups_here = {g for view in ports.values() for g in view.group_set}
    live = [r for g in sorted(groups_here) for r in rules.get(g, ())] \
        if isinstance(rules, Mapping) else [r for r in rules if r.security_group_id in groups_here]
    remote = _stable_names(
        r.remote_group_id for r in live if r.remote_group_id and r.ethertype == "IPv4")
    addresses = {g: _sorted_members(group_members, g) for g in remote}
    sets = {g: _set_name(n, addresses[g]) for g, n in remote.items()}
    keys: dict[tuple[str, str], set[RuleKey]] = {}
    for r in live:
        keys.setdefault((r.security_group_id, r.direction), set()).add(_rule_key(r, sets))
    gnames = _stable_names(groups_here)
    frags: list[Fragment] = []
    for gid in sorted(sets):
        frags.append(_set_fragment(table, sets[gid], addresses[gid]))
    # One chain per (group set, direction) that some port uses (also when its groups allow
    # nothing that way: the chain still lets DHCP through and drops the rest).
    gchain: dict[tuple[tuple[str, ...], str], str] = {}
    for group_set in sorted({view.group_set for view in ports.values()}):
        for direction in ("egress", "ingress"):
            union = set().union(*(keys.get((g, direction), ()) for g in group_set))
            name = _group_set_name([gnames[g] for g in group_set], _SUFFIX[direction])
            frags.append(_fragment("group", name,
                                   (table, direction, tuple(sorted(union, key=repr)))))
            gchain[(group_set, direction)] = name
    pnames = _named({pid: view.prefix for pid, view in ports.items()})  # `_stable_names`
    fingerprint = _fingerprint()
    chains = {group_set: (gchain[(group_set, "egress")], gchain[(group_set, "ingress")])
              for group_set, _ in gchain}
    port_frags = [view.fragment(table, pnames[pid], *chains[view.group_set], fingerprint)
                  for pid, view in ports.items()]
    frags.sort(key=lambda f: (f.rank, f.name))
    port_frags.sort(key=operator.attrgetter("name"))
    frags = [*frags, *port_frags, _fragment("skeleton", "skeleton", (table,))]
    shape = hashlib.sha256(table.encode())
    shape.update("".join([f"{f.kind}\0{f.name}\0{f.digest}\0" for f in frags]).encode())
    full = shape.copy()
    full.update("".join([f.elem_digest for f in frags]).encode())
    return Ruleset(table, tuple(frags), full.hexdigest()[:32] + "-" + shape.hexdigest()[:32])


# Creation order: sets, then the group chains that match on them, then the
# port chains (anti-spoofing), then the skeleton whose maps reach them all.
# Each compiler is looked up by name at every call, so a test can patch one.
register("set", 0, lambda frag: _compile_set(frag))
register("group", 1, lambda frag: _compile_group(frag))
register("port", 2, lambda frag: _compile_port(frag))
register("skeleton", 3, lambda frag: _compile_skeleton(frag))

__all__ = ["DIGEST_TAG", "FAMILY", "MAPS", "META_CHAIN", "ApplyRuleset", "Content", "Fragment",
           "Json", "RuleKey", "Ruleset", "RulesetChange", "SortedMembers", "compile_ruleset",
           "compiled", "digest_from_comment", "incremental", "plan_ruleset", "render",
           "ruleset_digest", "seal", "sets_update"]
