"""The kernel layer: guards that keep it inside our namespaces, and JSON round trips."""

from __future__ import annotations

import os
import secrets

import pytest

from spanwire.agent import firewall
from spanwire.dataplane import netns, nft, reader, sysctl
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import InvalidInput
from spanwire.model import AddressPair, FixedIP, Network, Port


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
def test_firewall_json_round_trips_through_nft(scratch_ns: str) -> None:
    net = Network(project_id="p", segmentation_id=7)
    ports = [
        Port(project_id="p", network_id=net.id, mac_address="fa:16:3e:00:00:01",
             fixed_ips=[FixedIP(subnet_id="s", ip_address="10.0.0.5")]),
        Port(project_id="p", network_id=net.id, mac_address="fa:16:3e:00:00:02",
             fixed_ips=[FixedIP(subnet_id="s", ip_address="10.0.0.6")],
             allowed_address_pairs=[AddressPair(ip_address="10.9.0.0/16",
                                                mac_address="fa:16:3e:00:00:09")]),
    ]
    fw = firewall.render(net, ports)
    assert fw is not None
    assert nft.list_table(scratch_ns, firewall.TABLE) is None
    nft.apply_json(scratch_ns, firewall.to_nft_json(fw))
    listing = nft.list_table(scratch_ns, firewall.TABLE)
    assert listing is not None and firewall.from_nft_listing(listing) == fw
    nft.apply_json(scratch_ns, firewall.to_nft_json(fw))  # replacing is idempotent
    nft.delete_table(scratch_ns, firewall.TABLE)
    assert nft.list_table(scratch_ns, firewall.TABLE) is None
