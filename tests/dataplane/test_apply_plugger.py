"""Taps moved by the Plugger thread while earlier ops run (real kernel, root)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from spanwire.agent.apply import Plugger, apply
from spanwire.agent.plan import ops as o
from spanwire.agent.plan.nft_table import RulesetChange
from spanwire.dataplane import netns, reader
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import Unavailable

pytestmark = pytest.mark.root


@pytest.fixture
def spaces() -> tuple[str, str]:  # type: ignore[misc]
    if os.geteuid() != 0:
        pytest.skip("needs root")
    prefix = f"sw{secrets.token_hex(3)}"
    node, rns = f"{prefix}-plug", f"{prefix}-plug-r"
    netns.create(node)
    netns.create(rns)
    try:
        yield node, rns
    finally:
        netns.remove(rns)
        netns.remove(node)


@pytest.fixture
def tools() -> Iterator[tuple[Kernel, Plugger]]:
    """A reconcile thread's Kernel and its Plugger, both closed however the test ends."""
    kernel, plugger = Kernel(), Plugger()
    try:
        yield kernel, plugger
    finally:
        plugger.close()
        kernel.close()


def _names(ns: str) -> set[str]:
    return {link.name for link in reader.links(ns)}


def test_a_tap_moved_early_is_configured_by_the_ops_after_it(
        spaces: tuple[str, str], tools: tuple[Kernel, Plugger]) -> None:
    (node, rns), (kernel, plugger) = spaces, tools
    kernel.create_veth(node, "tapearly", "vmearly", node)
    kernel.set_link(node, "tapearly", up=True)
    writes = kernel.writes
    ops = [o.SetSysctl(rns, "net/ipv4/ip_forward", "1"), o.MoveTap(node, rns, "tapearly"),
           o.SetLink(rns, "tapearly", 1450, None, True)]
    assert apply(kernel, "/nonexistent", ops, plugger) == 3
    assert "tapearly" in _names(rns) and "tapearly" not in _names(node)
    assert [link.mtu for link in reader.links(rns) if link.name == "tapearly"] == [1450]
    assert kernel.writes - writes == 3  # the move counts, though another Kernel made it


def test_a_failure_before_the_move_still_waits_for_it_and_is_what_is_raised(
        spaces: tuple[str, str], tools: tuple[Kernel, Plugger]) -> None:
    (node, rns), (kernel, plugger) = spaces, tools
    kernel.create_veth(node, "tapfail", "vmfail", node)
    broken = o.ApplyRuleset(rns, RulesetChange.REPLACE, "this is not nft", "spanwire")
    ops = [broken, o.MoveTap(node, rns, "tapfail"), o.SetLink(rns, "tapfail", None, None, True)]
    with pytest.raises(Unavailable, match="nft"):
        apply(kernel, "/nonexistent", ops, plugger)
    # the move had started: it finished before apply returned, and nothing brought the
    # tap up (a moved device arrives down), so no traffic passes unfiltered
    tap = [link for link in reader.links(rns) if link.name == "tapfail"]
    assert tap and not tap[0].up


def test_a_move_started_before_the_pass_is_the_one_the_pass_waits_for(
        spaces: tuple[str, str], tools: tuple[Kernel, Plugger]) -> None:
    (node, rns), (kernel, plugger) = spaces, tools
    kernel.create_veth(node, "tapeager", "vmeager", node)
    move = o.MoveTap(node, rns, "tapeager")
    plugger.eager(move)
    plugger.eager(move)  # the same event seen twice starts one move
    assert "tapeager" in plugger.moving
    # a second move of the same tap would fail (it is not in the node namespace any
    # more): the pass must take the one already running
    assert apply(kernel, "/nonexistent", [move, o.SetLink(rns, "tapeager", None, None,
                                                            True)], plugger) == 2
    assert "tapeager" in _names(rns) and not plugger.moving
    kernel.create_veth(node, "tapstale", "vmstale", node)
    plugger.eager(o.MoveTap(node, rns, "tapstale"))  # no pass ever plans it
    plugger.settle()
    assert not plugger.moving and plugger.take(o.MoveTap(node, rns, "tapstale")) is None
