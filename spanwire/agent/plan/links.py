"""Links of one routing namespace: lo, the VXLAN device, the taps, strays."""

from __future__ import annotations

from spanwire.agent.plan.ops import CreateVxlan, DeleteLink, MoveTap, Op, SetLink
from spanwire.agent.state import RoutingNs, Vxlan


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

    have_taps = {t.name: t for t in a.taps}
    want_taps = {t.name: t for t in d.taps}
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
    for name in sorted(a.other_links):
        late.append(DeleteLink(ns, name))
        gone.add(name)
    return early, late, gone
