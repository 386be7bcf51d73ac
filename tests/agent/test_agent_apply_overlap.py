"""`apply` runs a filtering transaction in the plugger's thread alongside what cannot let
traffic through (a membership-only change also alongside routes), and nothing else: pure
(nft is replaced by a recorder, no root)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from spanwire.agent import apply as apply_mod
from spanwire.agent.plan import ops as o
from spanwire.agent.plan.nft_table import RulesetChange
from spanwire.agent.state import Addr, Route
from spanwire.dataplane.kernel import Kernel


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[str] = []
        self.fail = fail
        self.lock = threading.Lock()

    def nft(self, ns: str, payload: str, timeout: float = 30.0) -> None:
        with self.lock:
            self.events.append(f"start {payload}")
        time.sleep(0.05)  # long enough for the ops alongside to run first
        with self.lock:
            self.events.append(f"end {payload}")
        if self.fail and payload == "port":
            raise RuntimeError("nft refused")

    def addr(self, ns: str, verb: str, dev: str, cidr: str) -> None:
        with self.lock:
            self.events.append(f"addr {cidr}")

    def set_link(self, ns: str, name: str, **kw: Any) -> None:
        with self.lock:
            self.events.append(f"up {name}")

    def route(self, ns: str, verb: str, dst: str, dev: str, via: str | None = None) -> None:
        with self.lock:
            self.events.append(f"route {dst}")


PORT_UP = [o.ApplyRuleset("ns", RulesetChange.INCREMENTAL, "port"),
           o.AddAddr("ns", Addr(dev="tapx", cidr="10.0.0.1/24")),
           o.SetLink("ns", "tapx", up=True),
           o.ApplyRuleset("ns", RulesetChange.SEAL, "seal")]


def _run(monkeypatch: pytest.MonkeyPatch, rec: Recorder, ops: list[o.Op] = PORT_UP) -> None:
    monkeypatch.setattr(apply_mod.nft, "apply", rec.nft)
    kernel = Kernel()
    monkeypatch.setattr(kernel, "addr", rec.addr)
    monkeypatch.setattr(kernel, "set_link", rec.set_link)
    monkeypatch.setattr(kernel, "route", rec.route)
    plugger = apply_mod.Plugger()
    try:
        apply_mod.apply(kernel, "/nonexistent", ops, plugger)
    finally:
        plugger.close()
        kernel.close()


def test_a_tap_comes_up_only_after_its_filtering_and_the_seal_follows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder()
    _run(monkeypatch, rec)
    events = rec.events
    assert events.index("end port") < events.index("up tapx") < events.index("start seal")
    # An address cannot let traffic through: it is written while the transaction runs.
    assert events.index("start port") < events.index("addr 10.0.0.1/24") < \
        events.index("end port")


def test_a_failed_filtering_transaction_stops_the_pass_before_the_tap_comes_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(fail=True)
    with pytest.raises(RuntimeError, match="nft refused"):
        _run(monkeypatch, rec)
    assert "up tapx" not in rec.events and "start seal" not in rec.events


ADDS = '{"nftables":[{"add":{"element":{"elem":["10.0.0.9"],"name":"sg_web"}}}]}'
REVOKES = ('{"nftables":[{"delete":{"element":{"elem":["10.0.0.9"],"name":"sg_web"}}},'
           '{"add":{"element":{"elem":["10.0.0.7"],"name":"sg_web"}}}]}')


def test_new_members_do_not_hold_back_a_route_but_revocations_and_port_changes_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a peer node a new port is a set element and a route: the route, which its
    first packet needs, is written while the set element goes in. Not while a member is
    being removed (a reused address must not meet its old group's grant), nor while a
    port's chains change."""
    route = o.ReplaceRoute("ns", Route(dst="10.0.0.9/32", dev="vx7", via="10.255.0.1"))
    for change, payload, overlaps in ((RulesetChange.SETS, ADDS, True),
                                      (RulesetChange.SETS, REVOKES, False),
                                      (RulesetChange.INCREMENTAL, ADDS, False)):
        rec = Recorder()
        _run(monkeypatch, rec, [o.ApplyRuleset("ns", change, payload), route,
                                o.ApplyRuleset("ns", RulesetChange.SEAL, "seal")])
        events = rec.events
        assert (events.index("route 10.0.0.9/32") < events.index(f"end {payload}")) \
            is overlaps, (change, payload)
        assert events.index(f"end {payload}") < events.index("start seal"), \
            "a ruleset op never overlaps another"
