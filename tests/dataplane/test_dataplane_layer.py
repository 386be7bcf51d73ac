"""The kernel layer: guards that keep it inside our namespaces, and JSON round trips."""

from __future__ import annotations

import os
import secrets
from dataclasses import replace

import pytest

from spanwire.agent import security
from spanwire.agent.apply import apply
from spanwire.agent.plan import security as plan_security
from spanwire.agent.state import RoutingNs
from spanwire.dataplane import netns, nft, reader, sysctl
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import InvalidInput
from spanwire.model import AddressPair, FixedIP, Network, Port, SecurityGroupRule


def test_sysctl_refuses_keys_outside_net() -> None:
    for key in ("kernel/hostname", "vm/swappiness", "net/../kernel/x"):
        with pytest.raises(InvalidInput):
            sysctl._path(key)


def test_namespace_names_are_checked() -> None:
    for bad in ("", "../x", ".hidden", "a/b"):
        with pytest.raises(netns.WrongNamespace):
            netns._check_name(bad)


def test_ip_batch_output_is_split_into_documents() -> None:
    assert reader._documents('[{"a":1}]\n[]\n[{"b":2}]') == [[{"a": 1}], [], [{"b": 2}]]


@pytest.fixture
def scratch_ns() -> str:  # type: ignore[misc]
    if os.geteuid() != 0:
        pytest.skip("needs root")
    name = f"sw{secrets.token_hex(3)}-dptest"
    netns.create(name)
    try:
        yield name
    finally:
        netns.remove(name)


@pytest.mark.root
def test_sockets_and_threads_land_in_the_named_namespace(scratch_ns: str) -> None:
    kernel = Kernel()
    try:
        sock = kernel.ipr(scratch_ns)
        assert netns.socket_inode(sock.fileno()) == netns.inode(scratch_ns)
        assert netns.run_in(scratch_ns, lambda: os.stat("/proc/thread-self/ns/net").st_ino) \
            == netns.inode(scratch_ns) != netns.host_inode()
        kernel.set_link(scratch_ns, "lo", up=True)
        assert [link.name for link in reader.links(scratch_ns)] == ["lo"]
        sysctl.write(scratch_ns, {"net/ipv4/ip_forward": "1"})
        assert sysctl.read(scratch_ns, ["net/ipv4/ip_forward"]) == {"net/ipv4/ip_forward": "1"}
    finally:
        kernel.close()


@pytest.mark.root
def test_security_table_replaces_stale_table_and_restart_is_a_no_op(scratch_ns: str) -> None:
    """From an old agent's `spanwire_ps` table to the compiled one, then nothing to do."""
    net = Network(project_id="p", segmentation_id=7)
    ports = [
        Port(project_id="p", network_id=net.id, mac_address="fa:16:3e:00:00:01",
             fixed_ips=[FixedIP(subnet_id="s", ip_address="10.0.0.5")], security_groups=["g"]),
        Port(project_id="p", network_id=net.id, mac_address="fa:16:3e:00:00:02",
             fixed_ips=[FixedIP(subnet_id="s", ip_address="10.0.0.6")],
             allowed_address_pairs=[AddressPair(ip_address="10.9.0.0/16",
                                                mac_address="fa:16:3e:00:00:09")]),
    ]
    rules = [SecurityGroupRule(project_id="p", security_group_id="g", direction="ingress",
                               remote_group_id="g")]
    stale = {"nftables": [{"add": {"table": {"family": "inet", "name": "spanwire_ps"}}}]}
    nft.apply(scratch_ns, stale)
    assert nft.list_tables(scratch_ns) == {"spanwire_ps"}
    want = RoutingNs(name=scratch_ns,
                     security=security.ruleset(ports, security.gather(ports, rules)))

    def have() -> RoutingNs:
        tables = nft.list_tables(scratch_ns)
        return RoutingNs(name=scratch_ns, nft_tables=tables,
                         security_digest=nft.read_digest(scratch_ns) if "spanwire" in tables
                         else None)

    ops = plan_security.plan(want, have())
    assert [(op.change, op.table) for op in ops] == [("replace", "spanwire"),
                                                     ("delete", "spanwire_ps")]
    kernel = Kernel()
    try:
        apply(kernel, "/nonexistent", ops)
        assert nft.list_tables(scratch_ns) == {"spanwire"}
        assert plan_security.plan(want, have()) == []  # digest matches: no write
        assert nft.list_set(scratch_ns, "sg_g") == ["10.0.0.5"]
        ops = plan_security.plan(replace(want, security=None), have())
        apply(kernel, "/nonexistent", ops)
        assert nft.list_tables(scratch_ns) == frozenset()
    finally:
        kernel.close()
