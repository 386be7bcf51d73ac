"""The kernel layer: guards that keep it inside our namespaces, and JSON round trips."""

from __future__ import annotations

import gzip
import os
import queue
import secrets
import struct
import time
from dataclasses import replace

import pytest

from spanwire.agent import actual, security
from spanwire.agent.apply import apply
from spanwire.agent.plan import security as plan_security
from spanwire.agent.state import RoutingNs
from spanwire.dataplane import capabilities, monitor, netns, nft, reader, sysctl
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
def test_capability_probe_reports_the_throughput_levers_and_leaves_nothing(
        scratch_ns: str) -> None:
    """nf_flow_table and BIG TCP through VXLAN are reported (the agent logs what is
    missing); the flowtable answer agrees with the kernel's build configuration."""
    probe_ns = f"{scratch_ns}-cap"
    caps = capabilities.probe(probe_ns)
    assert not netns.exists(probe_ns)
    assert all(caps[name] for name in capabilities.REQUIRED)
    assert isinstance(caps["nft_flowtable"], bool) and isinstance(caps["big_tcp_vxlan"], bool)
    if os.path.exists("/proc/config.gz"):
        with gzip.open("/proc/config.gz", "rt") as handle:
            config = handle.read().splitlines()
        built = all({f"{option}=y", f"{option}=m"} & set(config)
                    for option in ("CONFIG_NF_FLOW_TABLE", "CONFIG_NF_FLOW_TABLE_INET"))
        assert caps["nft_flowtable"] == built
    # What big_tcp_vxlan reads: the GSO limit a device reports (a veth's is 512 KB).
    kernel = Kernel()
    try:
        ipr = kernel.ipr(scratch_ns)
        ipr.link("add", ifname="v0", kind="veth", peer={"ifname": "v1"})
        assert capabilities._tso_max(ipr, "v0") > capabilities.LEGACY_GSO_MAX
        assert capabilities._tso_max(ipr, "absent") == 0
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
    # An older spanwire's port-security table, with its chain (a chainless table
    # filters nothing, and `list_tables` does not report it).
    stale = {"nftables": [{"add": {"table": {"family": "inet", "name": "spanwire_ps"}}},
                          {"add": {"chain": {"family": "inet", "table": "spanwire_ps",
                                             "name": "forward", "type": "filter",
                                             "hook": "forward", "prio": 0,
                                             "policy": "accept"}}}]}
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


def _link_message(kind: int, name: bytes, pad_attr: bool = True) -> bytes:
    """An rtnetlink link message as the kernel sends it: header, ifinfomsg, attributes."""
    attrs = b""
    if pad_attr:  # an attribute before the name, so the walk must skip it
        attrs += struct.pack("=HHI", 8, 4, 1500)  # IFLA_MTU
    raw = name + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), monitor.IFLA_IFNAME) + raw
    attrs += attr + b"\0" * ((4 - len(attr) % 4) % 4)
    body = struct.pack("=BxHiII", 0, 1, 7, 0, 0) + attrs
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_link_events_are_decoded_from_raw_netlink() -> None:
    data = (_link_message(monitor.RTM_NEWLINK, b"tapabc")
            + _link_message(monitor.RTM_DELLINK, b"tapdef", pad_attr=False)
            + _link_message(20, b"ignored"))  # RTM_NEWADDR: not a link event
    assert list(monitor.link_events(data)) == [("RTM_NEWLINK", "tapabc"),
                                               ("RTM_DELLINK", "tapdef")]
    whole = _link_message(monitor.RTM_NEWLINK, b"tapxyz")
    assert list(monitor.link_events(whole[:-6])) == []  # truncated: nothing is made up


def test_per_device_sysctls_come_from_netconf_and_ntable() -> None:
    netconf = [{"family": "inet", "interface": "tap1", "proxy_neigh": True},
               {"family": "inet", "interface": "vx1", "proxy_neigh": False},
               {"family": "inet6", "interface": "tap1", "proxy_neigh": False}]
    ntable = [{"family": "inet", "name": "arp_cache", "proxy_delay": 800},  # the defaults
              {"family": "inet", "name": "arp_cache", "dev": "tap1", "proxy_delay": 0},
              {"family": "inet", "name": "arp_cache", "dev": "vx1", "proxy_delay": 800},
              {"family": "inet6", "name": "ndisc_cache", "dev": "tap1", "proxy_delay": 800}]
    assert reader.link_sysctls(netconf, ntable) == {
        "net/ipv4/conf/tap1/proxy_arp": "1", "net/ipv4/conf/vx1/proxy_arp": "0",
        "net/ipv4/neigh/tap1/proxy_delay": "0", "net/ipv4/neigh/vx1/proxy_delay": "80"}
    assert actual._per_link("net/ipv4/conf/tap1/proxy_arp")
    assert actual._per_link("net/ipv4/neigh/tap1/proxy_delay")
    assert not actual._per_link("net/ipv4/conf/all/proxy_arp")
    assert not actual._per_link("net/ipv4/conf/tap1/rp_filter")
    assert not actual._per_link("net/ipv4/ip_forward")


@pytest.mark.root
def test_snapshot_reports_the_same_link_sysctls_as_proc(scratch_ns: str) -> None:
    kernel = Kernel()
    try:
        kernel.create_veth(scratch_ns, "tapa", "tapb", scratch_ns)
        sysctl.write(scratch_ns, {"net/ipv4/conf/tapa/proxy_arp": "1",
                                  "net/ipv4/neigh/tapa/proxy_delay": "0",
                                  "net/ipv4/neigh/tapb/proxy_delay": "40"})
        keys = [f"net/ipv4/{k}/{dev}/{leaf}" for dev in ("tapa", "tapb")
                for k, leaf in (("conf", "proxy_arp"), ("neigh", "proxy_delay"))]
        snap = reader.snapshot(scratch_ns)
        assert {k: snap.link_sysctls.get(k) for k in keys} == sysctl.read(scratch_ns, keys)
        assert snap.link_sysctls["net/ipv4/neigh/tapb/proxy_delay"] == "40"
    finally:
        kernel.close()


@pytest.mark.root
def test_link_monitor_sees_taps_come_and_go_in_its_namespace_only(scratch_ns: str) -> None:
    seen: queue.Queue[tuple[str, str]] = queue.Queue()
    mon = monitor.LinkMonitor(scratch_ns, lambda event, name: seen.put((event, name))).start()
    other = f"sw{secrets.token_hex(3)}-dpother"
    netns.create(other)
    kernel = Kernel()
    try:
        assert mon.running
        kernel.create_veth(other, "tapother", "tapother2", other)  # not its namespace
        kernel.create_veth(scratch_ns, "tapmon", "tapmon2", scratch_ns)
        kernel.delete_link(scratch_ns, "tapmon")

        def wait_for(event: str, name: str) -> None:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                got = seen.get(timeout=max(0.01, deadline - time.monotonic()))
                assert got[1] not in ("tapother", "tapother2")
                if got == (event, name):
                    return
            raise AssertionError(f"no {event} for {name}")

        wait_for("RTM_NEWLINK", "tapmon")
        wait_for("RTM_DELLINK", "tapmon")
    finally:
        mon.stop()
        kernel.close()
        netns.remove(other)
