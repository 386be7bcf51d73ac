"""Links of one namespace: lo, the VXLAN device, the taps, router legs, strays.

A leg (veth pair) is created and deleted only from its router end, which
takes the routing-namespace end with it; the routing-namespace end only has
its MTU and state kept right. So neither side ever deletes a link the other
still plans to use, and a router namespace's deletion is a leg's deletion.
"""

from __future__ import annotations

from spanwire.agent.naming import ROUTER_END
from spanwire.agent.plan.ops import (
    CreateGateway,
    CreateLeg,
    CreateVxlan,
    DeleteLink,
    MoveTap,
    Op,
    SetLink,
)
from spanwire.agent.state import Gateway, Leg, RoutingNs, Vxlan


def _immutable(vx: Vxlan) -> tuple[object, ...]:
    """What netlink cannot change in place; a difference means delete and recreate."""
    return (vx.name, vx.vni, vx.local, vx.port, vx.learning)


def plan(
    node_ns: str, d: RoutingNs, a: RoutingNs, loose: frozenset[str]
) -> tuple[list[Op], list[Op], set[str]]:
    """(ops to run early, link deletions to run last, links whose old state is gone).

    "Gone" links are recreated or freshly plugged: whatever the actual state
    said about their addresses, neighbours and routes no longer holds.
    """
    early: list[Op] = []
    late: list[Op] = []
    gone: set[str] = set()
    ns = d.name
    if not a.lo_up:
        early.append(SetLink(ns, "lo", up=True))

    want = d.vxlan
    have = a.vxlan
    if want is not None:
        if have is not None and have.name == want.name and _immutable(have) != _immutable(want):
            early.append(DeleteLink(ns, have.name))
            gone.add(have.name)
            have = None
        if have is None or have.name != want.name:
            early.append(CreateVxlan(node_ns, ns, want))
            early.append(SetLink(ns, want.name, up=True))
            gone.add(want.name)
        elif (have.mtu, have.mac, have.up) != (want.mtu, want.mac, want.up):
            early.append(SetLink(ns, want.name, mtu=want.mtu, mac=want.mac, up=True))
    if have is not None and (want is None or have.name != want.name):
        late.append(DeleteLink(ns, have.name))
        gone.add(have.name)

    # Only the differences are looked at: a thousand taps in place cost two set differences.
    have_taps = {t.name: t for t in a.taps - d.taps}
    want_taps = {t.name: t for t in d.taps - a.taps}
    for name in sorted(want_taps):
        tap = want_taps[name]
        current = have_taps.get(name)
        if current is None:
            if name in loose:
                early.append(MoveTap(node_ns, ns, name))
                early.append(SetLink(ns, name, mtu=tap.mtu, up=True))
                gone.add(name)
        elif (current.mtu, current.up) != (tap.mtu, tap.up):
            early.append(SetLink(ns, name, mtu=tap.mtu, up=True))
    for name in sorted(set(have_taps) - set(want_taps)):
        late.append(DeleteLink(ns, name))
        gone.add(name)
    early_legs, late_legs = _legs(ns, d.legs, a.legs)
    early += early_legs
    late += late_legs
    gone |= {op.name for op in late_legs}
    early_gw, late_gw, gone_gw = _gateway(node_ns, ns, d.gateway, a.gateway)
    early += early_gw
    late += late_gw
    gone |= gone_gw
    for name in sorted(a.other_links):
        late.append(DeleteLink(ns, name))
        gone.add(name)
    return early, late, gone


def _legs(ns: str, want: frozenset[Leg], have: frozenset[Leg]) -> tuple[list[Op], list[Op]]:
    """(creations and state fixes, deletions) of the legs of one namespace."""
    early: list[Op] = []
    late: list[Op] = []
    have_by = {leg.name: leg for leg in have}
    want_by = {leg.name: leg for leg in want}
    for name in sorted(want_by):
        leg, current = want_by[name], have_by.get(name)
        if current is None:
            if leg.peer_ns:  # the router end creates the pair, both ends up
                early.append(CreateLeg(ns, leg))
                early.append(SetLink(leg.peer_ns, leg.peer, mtu=leg.mtu, up=True))
                early.append(SetLink(ns, name, mtu=leg.mtu, up=True))
        elif (current.mtu, current.up) != (leg.mtu, leg.up):
            early.append(SetLink(ns, name, mtu=leg.mtu, up=True))
    # Only router ends ("rl…") are deleted here; that deletes their peers too.
    late += [DeleteLink(ns, name) for name in sorted(set(have_by) - set(want_by))
             if name.startswith(ROUTER_END)]
    return early, late


def _gateway(node_ns: str, ns: str, want: Gateway | None, have: Gateway | None
             ) -> tuple[list[Op], list[Op], set[str]]:
    """(creations and fixes, deletions, links whose entries are gone) for the gateway leg."""
    early: list[Op] = []
    late: list[Op] = []
    gone: set[str] = set()
    if have is not None and (want is None or have.name != want.name):
        # Deleted first when renamed: the new one may take the same MAC.
        (late if want is None else early).append(DeleteLink(ns, have.name))
        gone.add(have.name)
        have = None
    if want is None:
        return early, late, gone
    if have is None:
        early += [CreateGateway(node_ns, ns, want), SetLink(ns, want.name, up=True)]
        gone.add(want.name)
    elif (have.mac, have.mtu, have.up) != (want.mac, want.mtu, want.up):
        early.append(SetLink(ns, want.name, mtu=want.mtu, mac=want.mac, up=True))
    return early, late, gone
