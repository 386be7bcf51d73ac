"""The agent's tracked kernel state: advanced by the effect model, dropped when it is wrong."""

from __future__ import annotations

import pytest

from spanwire.agent import actual
from spanwire.agent.plan import ops as o
from spanwire.agent.runner import Agent
from spanwire.agent.state import Addr, NodeKernel, RoutingNs, Tap

NODE_NS = "swtest-node1"
NS = f"{NODE_NS}-aaaaaaaa0000"


@pytest.fixture
def agent(tmp_path) -> Agent:
    return Agent("sqlite:///unused.db", "node1", str(tmp_path))


def kernel(**changes: object) -> NodeKernel:
    rns = RoutingNs(name=NS, taps=frozenset({Tap("tap1", 1450)}), **changes)  # type: ignore[arg-type]
    return NodeKernel(node_ns=NODE_NS, namespaces={NS: rns})


def test_full_pass_tracks_the_read_state_advanced_by_the_ops(agent: Agent) -> None:
    have = kernel()
    ops = [o.AddAddr(NS, Addr("tap1", "10.0.0.1/24"))]
    agent._track(have, have, ops, full=True)
    assert agent.known is not None
    assert agent.known.namespaces[NS].addrs == {Addr("tap1", "10.0.0.1/24")}


def test_partial_pass_without_baseline_tracks_nothing(agent: Agent) -> None:
    agent._track(kernel(), kernel(), [o.AddAddr(NS, Addr("tap1", "10.0.0.1/24"))], full=False)
    assert agent.known is None


def test_an_op_the_model_refuses_drops_the_tracked_state(agent: Agent) -> None:
    agent.known = kernel()
    # deleting an address the tracked kernel does not hold: the tracking is wrong
    agent._track(kernel(), kernel(), [o.DelAddr(NS, Addr("tap1", "10.9.9.9/24"))], full=False)
    assert agent.known is None


def test_event_passes_plan_against_the_tracked_state_without_reading(
        agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_read(*_a: object, **_k: object) -> NodeKernel:
        raise AssertionError("an event-driven pass must not read the namespace")

    monkeypatch.setattr(actual, "read", no_read)
    monkeypatch.setattr(actual, "loose_taps", lambda _ns: frozenset({"tap2"}))
    agent.known = kernel(addrs=frozenset({Addr("tap1", "10.0.0.1/24")}))
    have = agent._actual(kernel(), {NS})
    assert have.namespaces[NS].addrs == {Addr("tap1", "10.0.0.1/24")}
    assert have.loose_taps == {"tap2"}


def test_loose_taps_come_from_the_link_monitor_while_it_runs(
        agent: Agent, monkeypatch: pytest.MonkeyPatch) -> None:
    class Running:
        running = True

    def no_listing(_ns: str) -> frozenset[str]:
        raise AssertionError("a running link monitor already knows the loose taps")

    monkeypatch.setattr(actual, "loose_taps", no_listing)
    agent.known = kernel()
    agent._monitor = Running()  # type: ignore[assignment]
    agent._loose = set()
    agent._on_link("RTM_NEWLINK", "tap9")
    agent._on_link("RTM_NEWLINK", "ul0")  # not a tap: ignored
    assert agent._actual(kernel(), {NS}).loose_taps == {"tap9"}
    agent._on_link("RTM_DELLINK", "tap9")  # moved into its routing namespace
    assert agent._actual(kernel(), {NS}).loose_taps == frozenset()
