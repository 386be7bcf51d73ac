"""Stateful security groups enforced by the agents, on a real kernel.

One network over three nodes: `a` (node1) and `b` (node2) in the project's
default group, `c` (node3) in group `web`, which starts without rules. Every
change goes into the store the way the api writes it; the agents pick it up
by watch, so each step also shows the change reaches the kernel in time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from spanwire.agent import naming
from spanwire.dataplane import nft, process
from spanwire.model import Port, SecurityGroup, SecurityGroupRule
from spanwire.qualify import cloud, underlay, vm
from spanwire.qualify.testbed import Testbed

pytestmark = [pytest.mark.root, pytest.mark.slow]

PORT = 7007
ECHO_SERVER = f"""
import socket, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", {PORT}))
srv.listen(64)
def echo(conn):
    with conn:
        while data := conn.recv(100):
            conn.sendall(data)
while True:
    threading.Thread(target=echo, args=(srv.accept()[0],), daemon=True).start()
"""
PROBE = f"""
import socket, sys
with socket.create_connection((sys.argv[1], {PORT}), timeout=0.2) as s:
    s.sendall(b"x")
    sys.exit(0 if s.recv(1) == b"x" else 1)
"""
# A long-lived connection: echoes each stdin line through the server.
SESSION = f"""
import socket, sys
s = socket.create_connection((sys.argv[1], {PORT}), timeout=3)
for line in sys.stdin:
    s.sendall(line.encode())
    print(s.recv(100).decode().strip(), flush=True)
"""
OPEN_WITHIN = 1.0  # seconds from store write to enforced in the kernel


class Cloud:
    def __init__(self, bed: Testbed) -> None:
        self.bed = bed
        self.store = bed.store()
        self.net, _ = cloud.add_network(self.store, "sg", vni=5601, cidr="10.60.0.0/24")
        self.web = SecurityGroup(project_id=cloud.PROJECT, name="web")
        self.store.put(self.web.key, self.web.to_bytes())
        self.ports: dict[str, Port] = {}
        self.ips: dict[str, str] = {}
        for name, node in (("a", "node1"), ("b", "node2"), ("c", "node3")):
            port, lease = bed.vm_create("sg", name, node=node)
            assert lease is not None
            self.ports[name], self.ips[name] = port, lease.ip

    def rns(self, node: str) -> str:
        return naming.routing_ns(underlay.node_ns(self.bed.state.prefix, node), self.net.id)

    def set_groups(self, vm_name: str, groups: list[str]) -> None:
        port = Port.from_bytes(self.store.get(Port.key_of(self.ports[vm_name].id)).value)
        port = port.evolve(security_groups=groups)
        self.store.put(port.key, port.to_bytes())

    def add_rule(self, **fields: object) -> SecurityGroupRule:
        rule = SecurityGroupRule(project_id=cloud.PROJECT, security_group_id=self.web.id,
                                 direction="ingress", **fields)  # type: ignore[arg-type]
        self.store.put(rule.key, rule.to_bytes())
        return rule

    def ping(self, src: str, dst: str, count: int = 2) -> bool:
        return self.bed.vm_exec(src, ["ping", "-c", str(count), "-i", "0.2", "-W", "1",
                                      self.ips[dst]]).returncode == 0

    def tcp(self, src: str, dst: str) -> bool:
        return self.bed.vm_exec(src, [sys.executable, "-c", PROBE, self.ips[dst]],
                                timeout=5).returncode == 0


@pytest.fixture(scope="module")
def sg(bed: Testbed) -> Iterator[Cloud]:
    world = Cloud(bed)
    server = process.spawn(vm.vm_ns(bed.state.prefix, "c"), [sys.executable, "-c", ECHO_SERVER])
    try:
        time.sleep(0.3)
        yield world
    finally:
        process.stop_child(server)


def within(check: Callable[[], bool], seconds: float = OPEN_WITHIN) -> float:
    """Seconds until `check()` held (asserting it did within `seconds`)."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_default_group_members_reach_each_other_and_others_are_denied(sg: Cloud) -> None:
    assert sg.ping("a", "b") and sg.ping("b", "a")
    assert sg.tcp("a", "c")  # c is still in the default group
    sg.set_groups("c", [sg.web.id])  # no rules: ingress denied (egress too)
    within(lambda: not sg.tcp("a", "c"))
    assert not sg.ping("a", "c", count=1) and not sg.ping("c", "a", count=1)
    assert sg.ping("a", "b")


def test_rule_opens_and_closes_a_flow_within_a_second(sg: Cloud) -> None:
    rule = sg.add_rule(protocol="tcp", port_range_min=PORT, port_range_max=PORT,
                       remote_ip_prefix="0.0.0.0/0")
    within(lambda: sg.tcp("a", "c"))
    assert sg.tcp("b", "c")
    assert not sg.ping("a", "c", count=1)  # only what the rule allows
    sg.store.delete(rule.key)
    within(lambda: not sg.tcp("a", "c"))


def test_remote_group_rule_follows_membership(sg: Cloud) -> None:
    default = sg.ports["a"].security_groups[0]
    rule = sg.add_rule(protocol="tcp", port_range_min=PORT, port_range_max=PORT,
                       remote_group_id=default)
    within(lambda: sg.tcp("a", "c") and sg.tcp("b", "c"))
    # b leaves the default group for one that lets it send anywhere: c's set loses b
    out = SecurityGroup(project_id=cloud.PROJECT, name="outbound")
    sg.store.put(out.key, out.to_bytes())
    egress = SecurityGroupRule(project_id=cloud.PROJECT, security_group_id=out.id,
                               direction="egress")
    sg.store.put(egress.key, egress.to_bytes())
    sg.set_groups("b", [out.id])
    within(lambda: not sg.tcp("b", "c"))
    assert sg.tcp("a", "c")
    assert not sg.ping("b", "a", count=1)  # nor is b a member for a's default rule
    sg.set_groups("b", [default])
    within(lambda: sg.tcp("b", "c"))
    assert sg.ping("b", "a")
    sg.store.delete(rule.key)
    within(lambda: not sg.tcp("a", "c"))


def test_established_connection_survives_an_unrelated_rule_update(sg: Cloud) -> None:
    rule = sg.add_rule(protocol="tcp", port_range_min=PORT, port_range_max=PORT,
                       remote_ip_prefix=f"{sg.ips['a']}/32")
    within(lambda: sg.tcp("a", "c"))
    session = subprocess.Popen(
        process.in_ns(vm.vm_ns(sg.bed.state.prefix, "a"),
                      [sys.executable, "-c", SESSION, sg.ips["c"]]),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert session.stdin and session.stdout
        session.stdin.write("one\n")
        session.stdin.flush()
        assert session.stdout.readline().strip() == "one"
        before = nft.read_digest(sg.rns("node3"))
        unrelated = sg.add_rule(protocol="udp", port_range_min=9999, port_range_max=9999)
        within(lambda: nft.read_digest(sg.rns("node3")) != before)  # table swapped
        session.stdin.write("two\n")
        session.stdin.flush()
        assert session.stdout.readline().strip() == "two"
    finally:
        session.kill()
        session.communicate(timeout=5)
    sg.store.delete(unrelated.key)
    sg.store.delete(rule.key)


def test_restart_with_security_groups_writes_nothing(sg: Cloud) -> None:
    sg.add_rule(protocol="tcp", port_range_min=PORT, port_range_max=PORT,
                remote_ip_prefix="0.0.0.0/0")
    within(lambda: sg.tcp("a", "c"))
    for node in ("node3", "node1"):
        assert nft.read_digest(sg.rns(node)) is not None
        writes = sg.bed.restart_agent_first_pass(node)
        assert writes == 0, f"restart of {node} made {writes} writes"
    assert sg.tcp("a", "c") and sg.ping("a", "b")
    assert "spanwire_ps" not in nft.list_tables(sg.rns("node1"))
