"""The dnsmasq of one routing namespace: start, reload (SIGHUP) or stop."""

from __future__ import annotations

from spanwire.agent.plan.ops import Op, ReloadDhcp, StartDhcp, StopDhcp
from spanwire.agent.state import RoutingNs


def plan(d: RoutingNs, a: RoutingNs) -> list[Op]:
    want, have = d.dhcp, a.dhcp
    if want is None:
        return [StopDhcp(d.name, have.pid)] if have is not None else []
    if have is None:
        return [StartDhcp(d.name, want)]
    if want.argv != have.argv:
        return [StopDhcp(d.name, have.pid), StartDhcp(d.name, want)]
    if want.files != have.files:
        return [ReloadDhcp(d.name, want, have.pid)]
    return []
