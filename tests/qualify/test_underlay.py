"""The testbed's underlay: which CPU each host's receive work goes to, and its bridges."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from spanwire.dataplane import netns, rps, sysctl
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import Unavailable
from spanwire.qualify import underlay


def test_rps_mask_is_node_index_mod_cpus_and_off_on_one_cpu() -> None:
    assert [underlay.rps_cpu(i, 2) for i in (1, 2, 3, 4)] == [1, 0, 1, 0]
    assert [underlay.rps_mask(i, 2) for i in (1, 2, 3)] == [0b10, 0b01, 0b10]
    assert [underlay.rps_mask(i, 4) for i in (1, 2, 3, 4, 5)] == [2, 4, 8, 1, 2]
    assert underlay.rps_mask(1, 1) == underlay.rps_mask(2, 1) == 0, "nothing to steer to"
    assert underlay.rps_mask(2, 0) == 0


def test_two_nodes_and_the_outside_host_spread_over_two_cpus() -> None:
    """Every path the benches measure (node1 → node2, outside → node2) crosses CPUs."""
    legs = underlay.steered_legs("swx", {"node2": 2, "node1": 1})
    assert [(ns, dev) for ns, dev, _ in legs] == [
        ("swx-out", "eth0"), ("swx-node1", "ul0"), ("swx-node1", "px0"),
        ("swx-node2", "ul0"), ("swx-node2", "px0")]
    cpu = {ns: underlay.rps_cpu(index, 2) for ns, _, index in legs}
    assert cpu["swx-node1"] != cpu["swx-node2"] and cpu["swx-out"] != cpu["swx-node2"]


@pytest.fixture
def prefix() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = "sw" + secrets.token_hex(3)
    kernel = Kernel()
    try:
        yield name
    finally:
        underlay.destroy(kernel, name)
        kernel.close()


def host_bridge_nf() -> dict[str, str | None]:
    """The host's own values (read only: this process runs in the host's namespace)."""
    out: dict[str, str | None] = {}
    for key in underlay.BRIDGE_NF:
        try:
            with open(sysctl.PROC + key) as handle:
                out[key] = handle.read().strip()
        except OSError:
            out[key] = None
    return out


@pytest.mark.root
def test_built_hosts_steer_to_their_cpu_bridges_skip_netfilter_destroy_leaves_nothing(
        prefix: str) -> None:
    kernel = Kernel()
    host = host_bridge_nf()
    try:
        underlay.build_underlay(kernel, prefix)
        underlay.build_outside(kernel, prefix)
        for index in (1, 2):
            underlay.build_node(kernel, prefix, f"node{index}", index)
        cpus = os.cpu_count() or 1
        for ns, dev, index in underlay.steered_legs(prefix, {"node1": 1, "node2": 2}):
            assert rps.masks(kernel, ns, dev) == [underlay.rps_mask(index, cpus)], (ns, dev)
        ul = underlay.underlay_ns(prefix)
        for link in ("ul1", "pp1", "ppo"):  # the bridge side is not steered
            assert rps.masks(kernel, ul, link) == [0]
        values = sysctl.read(ul, underlay.BRIDGE_NF)
        if all(v is not None for v in host.values()):  # br_netfilter in this kernel
            assert values == dict.fromkeys(underlay.BRIDGE_NF, "0")
        assert host_bridge_nf() == host, "the host's own values are untouched"
        node1 = underlay.node_ns(prefix, "node1")
        rps.set_mask(kernel, node1, "ul0", 0)
        assert rps.masks(kernel, node1, "ul0") == [0]
        assert len(underlay.destroy(kernel, prefix)) == 4
        assert netns.list_names(prefix + "-") == []
    finally:
        kernel.close()


@pytest.mark.root
def test_rps_writes_nothing_when_sysfs_shows_another_device(prefix: str,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    kernel = Kernel()
    try:
        underlay.build_underlay(kernel, prefix)
        underlay.build_outside(kernel, prefix)
        out = underlay.outside_ns(prefix)
        before = rps.masks(kernel, out, "eth0")
        monkeypatch.setattr(rps, "_identity", lambda *_: "999999 02:00:00:00:00:01")
        with pytest.raises(Unavailable, match="sysfs shows another eth0"):
            rps.set_mask(kernel, out, "eth0", 0)
        monkeypatch.undo()
        assert rps.masks(kernel, out, "eth0") == before
    finally:
        kernel.close()
