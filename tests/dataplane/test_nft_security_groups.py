"""Security groups and port security on the real kernel, in throwaway namespaces.

Topology (all names carry a per-run prefix, everything is torn down in the
fixture's `finally`): one routing namespace built like the agent's — the
anycast gateway 10.9.0.1/24 (noprefixroute) on every tap, a /32 route and a
permanent neighbour per VM, proxy ARP with no delay — and three VM namespaces
A, B, C plugged in by veths whose host ends are named `naming.tap(port_id)`.
The compiled ruleset is applied with `dataplane.nft` and every flow of the
matrix is tried with real packets.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from spanwire.agent import desired, naming
from spanwire.agent.plan import security_groups as sg
from spanwire.dataplane import netns, nft, process, sysctl
from spanwire.errors import Unavailable
from spanwire.model import AddressPair, FixedIP, Port, SecurityGroupRule

pytestmark = [pytest.mark.root]

WEB, OTHER = "aaaaaaaa-0000-4000-8000-00000000000a", "bbbbbbbb-0000-4000-8000-00000000000b"
PY = [sys.executable, "-I", "-S", "-c"]
SERVER = """
import socket, sys, threading
log, ready, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
def echo(c):
    with c:
        while data := c.recv(4096):
            c.sendall(data)
def serve(s):
    while True:
        threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
for port in ports:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 5000))
open(ready, "w").close()
while True:
    data, addr = u.recvfrom(2048)
    with open(log, "a") as f:
        f.write(data.decode(errors="replace") + " " + addr[0] + "\\n")
"""
CONNECT = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    s.sendall(b"hi"); ok = s.recv(2) == b"hi"
except OSError:
    ok = False
sys.exit(0 if ok else 1)
"""
SEND_UDP = """
import socket, sys
dst, token, src = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if src:
    s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT: send from an address we do not own
    s.bind((src, 0))
for _ in range(3):
    s.sendto(token.encode(), (dst, 5000))
"""
HOLD = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
for line in sys.stdin:
    s.sendall(line.encode())
    got = b""
    while not got.endswith(b"\\n"):
        got += s.recv(100)
    print(got.decode().strip(), flush=True)
"""


@dataclass
class Vm:
    ns: str
    port: Port
    log: str

    @property
    def ip(self) -> str:
        return self.port.ips[0]


@dataclass
class Bed:
    rns: str
    vms: dict[str, Vm]
    digest: str | None = None

    def install(self, ports: list[Port], rules: list[SecurityGroupRule],
                members: dict[str, list[str]]) -> list[sg.ApplyRuleset]:
        """Compile, plan against the kernel's digest and apply, as the agent would."""
        doc = sg.compile_ruleset(ports, rules, members)
        ops = sg.plan_ruleset(self.rns, doc, nft.read_digest(self.rns))
        for op in ops:
            nft.apply(op.ns, op.payload)
        return ops


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def mkport(n: int, groups: list[str], **kw: object) -> Port:
    return Port(id=f"{secrets.token_hex(4)}-{n:04x}-4000-8000-000000000000", project_id="p",
                network_id="net", mac_address=f"fa:16:3e:00:09:{n:02x}", security_groups=groups,
                fixed_ips=[FixedIP(subnet_id="s", ip_address=f"10.9.0.{10 + n}")], **kw)


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    if os.geteuid() != 0 or shutil.which("nft") is None:
        pytest.skip("needs root and nft")
    prefix = "sg" + secrets.token_hex(3)
    rns = f"{prefix}-r"
    names = [rns] + [f"{prefix}-{v}" for v in "abc"]
    tmp = tempfile.mkdtemp(prefix=f"{prefix}-")
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for name in names:
            netns.create(name)
            ip("-n", name, "link", "set", "lo", "up")
        sysctl.write(rns, dict(desired.NS_SYSCTLS))
        vms = {}
        for n, v in enumerate("abc", 1):
            port, vns = mkport(n, [WEB if v != "c" else OTHER]), f"{prefix}-{v}"
            tap = naming.tap(port.id)
            sysctl.write(vns, {"net/ipv6/conf/all/disable_ipv6": "1",
                               "net/ipv6/conf/default/disable_ipv6": "1"})
            ip("-n", rns, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", vns)
            ip("-n", vns, "link", "set", "eth0", "address", port.mac_address, "up")
            ip("-n", vns, "addr", "add", f"{port.ips[0]}/24", "dev", "eth0")
            ip("-n", vns, "route", "add", "default", "via", "10.9.0.1")
            ip("-n", rns, "link", "set", tap, "up")
            ip("-n", rns, "addr", "add", "10.9.0.1/24", "dev", tap, "noprefixroute")
            ip("-n", rns, "route", "add", f"{port.ips[0]}/32", "dev", tap)
            ip("-n", rns, "neigh", "replace", port.ips[0], "lladdr", port.mac_address,
               "dev", tap, "nud", "permanent")
            sysctl.write(rns, dict(desired.tap_sysctls(tap)))
            vms[v] = Vm(vns, port, os.path.join(tmp, f"{v}.log"))
            ready = os.path.join(tmp, f"{v}.ready")
            servers.append(process.spawn(vns, [*PY, SERVER, vms[v].log, ready, "22", "23",
                                               "8080"]))
            deadline = time.monotonic() + 10
            while not os.path.exists(ready) and time.monotonic() < deadline:
                time.sleep(0.02)
        yield Bed(rns, vms)
    finally:
        for proc in servers:
            process.stop_child(proc)
        process.kill_all_in(names)
        for name in names:
            netns.remove(name)
        shutil.rmtree(tmp, ignore_errors=True)


def ping(src: Vm, dst: str) -> bool:
    proc = subprocess.run(process.in_ns(src.ns, ["ping", "-c1", "-W1", "-q", dst]),
                          capture_output=True, timeout=10)
    return proc.returncode == 0


def tcp(src: Vm, dst: str, port: int, timeout: float = 1.0) -> bool:
    proc = subprocess.run(process.in_ns(src.ns, [*PY, CONNECT, dst, str(port), str(timeout)]),
                          capture_output=True, timeout=10)
    return proc.returncode == 0


def udp_arrives(src: Vm, dst: Vm, spoof: str = "") -> bool:
    """Three datagrams from `src` (from `spoof` if set) reach `dst`'s receiver?"""
    token = secrets.token_hex(6)
    subprocess.run(process.in_ns(src.ns, [*PY, SEND_UDP, dst.ip, token, spoof]),
                   check=True, capture_output=True, timeout=10)
    time.sleep(0.3)
    try:
        with open(dst.log) as handle:
            return token in handle.read()
    except FileNotFoundError:
        return False


def base_rules() -> list[SecurityGroupRule]:
    def r(group: str, direction: str, **kw: object) -> SecurityGroupRule:
        return SecurityGroupRule(project_id="p", security_group_id=group, direction=direction,
                                 **kw)
    return [
        r(WEB, "egress"),
        r(WEB, "ingress", protocol="icmp"),
        r(WEB, "ingress", protocol="tcp", port_range_min=22, port_range_max=22,
          remote_group_id=WEB),
        r(WEB, "ingress", protocol="tcp", port_range_min=8080, remote_ip_prefix="10.9.0.0/24"),
        r(WEB, "ingress", protocol="udp", port_range_min=5000, remote_ip_prefix="0.0.0.0/0"),
        r(OTHER, "egress", protocol="tcp"),
    ]


def members(bed: Bed, *extra: str) -> dict[str, list[str]]:
    return {WEB: [bed.vms["a"].ip, bed.vms["b"].ip, *extra], OTHER: [bed.vms["c"].ip]}


def ports(bed: Bed) -> list[Port]:
    return [v.port for v in bed.vms.values()]


def test_matrix_every_allowed_flow_passes_every_other_fails(bed: Bed) -> None:
    bed.install(ports(bed), base_rules(), members(bed))
    a, b, c = bed.vms["a"], bed.vms["b"], bed.vms["c"]
    got = {
        "A->B icmp": ping(a, b.ip),
        "A->B tcp 22 (member)": tcp(a, b.ip, 22),
        "C->B tcp 8080 (prefix)": tcp(c, b.ip, 8080),
        "A->gateway icmp": ping(a, "10.9.0.1"),
        "A->B tcp 23 (no rule)": tcp(a, b.ip, 23),
        "C->B tcp 22 (non-member)": tcp(c, b.ip, 22),
        "C->B icmp (C egress tcp only)": ping(c, b.ip),
        "C->gateway icmp (egress)": ping(c, "10.9.0.1"),
        "A->C icmp (C default deny)": ping(a, c.ip),
        "A->C tcp 22 (C default deny)": tcp(a, c.ip, 22),
    }
    want = {k: i < 4 for i, k in enumerate(got)}
    assert got == want


def test_remote_group_membership_change_flips_the_flow(bed: Bed) -> None:
    b, c = bed.vms["b"], bed.vms["c"]
    bed.install(ports(bed), base_rules(), members(bed))
    assert not tcp(c, b.ip, 22)
    ops = bed.install(ports(bed), base_rules(), members(bed, c.ip))
    assert [op.change for op in ops] == [sg.RulesetChange.SETS]
    start = time.monotonic()
    while not tcp(c, b.ip, 22, timeout=0.2):
        assert time.monotonic() - start < 1.0, "flow did not open within a second"
    ops = bed.install(ports(bed), base_rules(), members(bed))
    assert [op.change for op in ops] == [sg.RulesetChange.SETS]
    assert not tcp(c, b.ip, 22)


def test_established_connection_survives_rule_updates(bed: Bed) -> None:
    a, b = bed.vms["a"], bed.vms["b"]
    bed.install(ports(bed), base_rules(), members(bed))
    held = subprocess.Popen(process.in_ns(a.ns, [*PY, HOLD, b.ip, "22"]), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        def roundtrip(word: str) -> str:
            assert held.stdin is not None and held.stdout is not None
            held.stdin.write(word + "\n")
            held.stdin.flush()
            return held.stdout.readline().strip()

        assert roundtrip("one") == "one"
        more = [*base_rules(), SecurityGroupRule(project_id="p", security_group_id=WEB,
                                                 direction="ingress", protocol="tcp",
                                                 port_range_min=9999)]
        assert [op.change for op in bed.install(ports(bed), more, members(bed))] == ["replace"]
        assert roundtrip("two") == "two"
        ops = bed.install(ports(bed), more, members(bed, "10.9.0.200"))
        assert [op.change for op in ops] == ["sets"]
        assert roundtrip("three") == "three"
        assert tcp(a, b.ip, 22), "new connections still allowed too"
    finally:
        held.kill()
        held.wait(timeout=5)


def test_port_security_drops_forged_ip_and_mac(bed: Bed) -> None:
    a, b, c = bed.vms["a"], bed.vms["b"], bed.vms["c"]
    pair = a.port.evolve(allowed_address_pairs=[AddressPair(ip_address="10.9.0.64/28")])
    bed.install([pair, b.port, c.port], base_rules(), members(bed))
    assert udp_arrives(a, b), "control: A's own address passes"
    assert udp_arrives(a, b, spoof="10.9.0.70"), "allowed address pair prefix passes"
    assert not udp_arrives(a, b, spoof="10.9.0.99"), "forged source IP"
    assert not udp_arrives(a, b, spoof=c.ip), "another VM's source IP"
    ip("-n", a.ns, "link", "set", "eth0", "address", "fa:16:3e:00:09:77")
    try:
        assert not udp_arrives(a, b), "forged source MAC"
    finally:
        ip("-n", a.ns, "link", "set", "eth0", "address", a.port.mac_address)


def test_port_security_disabled_lets_everything_through(bed: Bed) -> None:
    a, b, c = bed.vms["a"], bed.vms["b"], bed.vms["c"]
    open_a = a.port.evolve(port_security_enabled=False)
    bed.install([open_a, b.port, c.port], base_rules(), members(bed))
    assert udp_arrives(a, b, spoof="10.9.0.99"), "spoofed IP passes"
    ip("-n", a.ns, "link", "set", "eth0", "address", "fa:16:3e:00:09:77")
    try:
        assert udp_arrives(a, b), "spoofed MAC passes"
    finally:
        ip("-n", a.ns, "link", "set", "eth0", "address", a.port.mac_address)
    assert tcp(c, a.ip, 23), "no security groups on A: C reaches a port no rule opens"


def test_digest_readback_no_op_and_rejected_batch_changes_nothing(bed: Bed) -> None:
    a, b = bed.vms["a"], bed.vms["b"]
    doc = sg.compile_ruleset(ports(bed), base_rules(), members(bed))
    bed.install(ports(bed), base_rules(), members(bed))
    assert nft.read_digest(bed.rns) == sg.ruleset_digest(doc)
    assert sg.plan_ruleset(bed.rns, doc, nft.read_digest(bed.rns)) == []
    broken = {"nftables": [*doc.document()["nftables"][:-1], {"add": {"rule": {
        "family": "inet", "table": "spanwire", "chain": "forward",
        "expr": [{"jump": {"target": "no-such-chain"}}]}}}]}
    with pytest.raises(Unavailable, match=r"nft rejected the ruleset .*No such file"):
        nft.apply(bed.rns, sg.render(broken))
    assert nft.read_digest(bed.rns) == sg.ruleset_digest(doc), "old table still in place"
    assert tcp(a, b.ip, 22) and not tcp(a, b.ip, 23)
    table = nft.list_table(bed.rns)
    assert table is not None and any("set" in i for i in table["nftables"])
    assert nft.delete_table(bed.rns) and not nft.delete_table(bed.rns, "spanwire")
    assert nft.read_digest(bed.rns) is None and nft.list_table(bed.rns) is None
    assert [op.change for op in sg.plan_ruleset(bed.rns, doc, None)] == ["replace"]


def test_replace_leaves_no_stale_members_or_chains(bed: Bed) -> None:
    """Why the batch deletes the table instead of `flush table`: flush keeps sets
    (with their elements) and chains, so a removed member or port would linger."""
    a, b, c = bed.vms["a"], bed.vms["b"], bed.vms["c"]

    def in_web_set(addr: str) -> bool:
        elems = nft.list_set(bed.rns, "sg_aaaaaaaa0000") or []
        nets = [ipaddress.ip_network(e if isinstance(e, str) else
                                     f"{e['prefix']['addr']}/{e['prefix']['len']}")
                for e in elems]
        return any(ipaddress.ip_address(addr) in n for n in nets)

    bed.install(ports(bed), base_rules(), members(bed, c.ip))
    assert in_web_set(c.ip)
    ops = bed.install([a.port, b.port], base_rules()[:-1], members(bed))
    assert [op.change for op in ops] == ["replace"]
    assert in_web_set(a.ip) and not in_web_set(c.ip)
    listing = nft.list_table(bed.rns) or {}
    chains = {i["chain"]["name"] for i in listing["nftables"] if "chain" in i}
    assert not any(name.startswith(c.port.id[:8]) for name in chains)
    assert tcp(c, a.ip, 22) is False and tcp(c, b.ip, 23) is False


def base_chains(bed: Bed) -> dict[str, tuple[str, int]]:
    listing = nft.list_table(bed.rns) or {"nftables": []}
    return {i["chain"]["name"]: (i["chain"]["hook"], i["chain"]["prio"])
            for i in listing["nftables"] if "hook" in i.get("chain", {})}


def test_one_forward_chain_checks_sender_egress_and_receiver_ingress(bed: Bed) -> None:
    """C in two groups: what either allows passes, in both directions, and each new flow
    still meets the other port's rules in the same (one) forward chain."""
    a, b, c = bed.vms["a"], bed.vms["b"], bed.vms["c"]
    both = c.port.evolve(security_groups=[OTHER, WEB])
    bed.install([a.port, b.port, both], base_rules(), members(bed, c.ip))
    assert base_chains(bed) == {"prerouting": ("prerouting", -300), "input": ("input", 0),
                                "forward": ("forward", 0), "output": ("output", 0)}
    assert ping(a, c.ip), "WEB's ingress icmp now applies to C"
    assert tcp(a, c.ip, 22), "and WEB's tcp 22 from members"
    assert not tcp(a, c.ip, 23), "neither group opens 23"
    assert ping(c, b.ip), "WEB's egress (all) now applies to C"
    assert not tcp(c, b.ip, 23), "C may send it, B's ingress refuses"
    assert tcp(c, b.ip, 22), "C is a WEB member: B's tcp 22 rule takes it"


def two_chain_table(rs: sg.Ruleset) -> dict[str, object]:
    """The table the agent before the merged `forward` chain wrote for the same state
    (ports in one group each): egress in `forward` (priority 0), ingress in `forward-in`
    (priority 10), port and group chains that accept, and a digest of its own."""
    cmds: list[dict[str, Any]] = []
    forward_in: list[dict[str, Any]] = []
    for cmd in rs.document()["nftables"]:
        r = cmd.get("add", {}).get("rule")
        if r is None or r["chain"] == sg.META_CHAIN:
            if r is None:
                cmds.append(cmd)
            continue
        expr = r["expr"]
        if r["chain"] == "forward" and expr[-1].get("vmap", {}).get("data") == "@ingress":
            forward_in = [[sg._EST, {"accept": None}], expr]
            continue
        if r["chain"].startswith("grp-") and "return" in expr[-1]:
            expr = [*expr[:-1], {"accept": None}]
        cmds.append({"add": {"rule": {**r, "expr": expr}}})
    spec = {"family": "inet", "table": rs.table, "name": "forward-in", "type": "filter",
            "hook": "forward", "prio": 10, "policy": "accept"}
    at = next(i for i, c in enumerate(cmds) if "rule" in c.get("add", {}))
    cmds.insert(at, {"add": {"chain": spec}})
    cmds += [{"add": {"rule": {"family": "inet", "table": rs.table, "chain": "forward-in",
                               "expr": e}}} for e in forward_in]
    old = sg.seal(rs.table, cmds[4:])  # after metainfo and the add/delete/add of the table
    assert sg.ruleset_digest(old) != rs.digest
    return old


def test_a_kernel_with_the_two_chain_table_is_converged_in_one_replace(bed: Bed) -> None:
    a, b, c = bed.vms["a"], bed.vms["b"], bed.vms["c"]
    desired = sg.compile_ruleset(ports(bed), base_rules(), members(bed))
    nft.apply(bed.rns, sg.render(two_chain_table(desired)))
    assert base_chains(bed)["forward-in"] == ("forward", 10)
    assert tcp(a, b.ip, 22) and not tcp(c, b.ip, 22) and not ping(a, c.ip), "old layout works"
    ops = bed.install(ports(bed), base_rules(), members(bed))
    assert [op.change for op in ops] == [sg.RulesetChange.REPLACE]
    assert "forward-in" not in base_chains(bed)
    assert nft.read_digest(bed.rns) == desired.digest
    assert tcp(a, b.ip, 22) and not tcp(c, b.ip, 22) and not ping(a, c.ip)
    assert bed.install(ports(bed), base_rules(), members(bed)) == [], "then nothing to do"
