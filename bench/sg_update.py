"""Security-group update latency with ~1,000 rules on one node.

    sudo .venv/bin/python bench/sg_update.py [--rules 1000] [--ports 20] [--samples 50]

Builds a throwaway routing namespace (per-run prefix) with two VM namespaces
X and Y plugged in like the agent's taps, plus `--ports - 2` further secured
ports (no VM behind them: their chains exist, which is what costs). The rules
are spread over 10 groups and every port is in two (group rules live once, in
shared per-group chains; ports jump to them). Measures, then tears everything
down:

- compile (pure Python) and apply (`nft -j -f`) time of a full table
  replacement, and of a membership-only set update, p50/p99;
- baseline: applying an empty table (the cost of one nft transaction);
- read_digest (what a warm agent restart pays to find "nothing to do");
- flow flip: a prober in X opens a fresh TCP connection to Y every ~2 ms;
  from the moment the update starts (compile included) to the first
  connection that succeeds (allow) / after which none succeeds (deny),
  for a rule change (table replace) and a membership change (set update).

Writes bench/results/sg_update.json and prints a table.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import machine  # bench/machine.py, next to this script
from rich.console import Console
from rich.table import Table

from spanwire.agent import desired, naming
from spanwire.agent.plan import security_groups as sg
from spanwire.dataplane import netns, nft, process, sysctl
from spanwire.model import FixedIP, Port, SecurityGroupRule

console = Console()
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "sg_update.json")
PY = [sys.executable, "-I", "-S", "-c"]
GROUPS = [f"{g:08x}-0000-4000-8000-{g:012x}" for g in range(10)]
PEERS = "eeeeeeee-0000-4000-8000-eeeeeeeeeeee"  # remote group of the membership flip
SERVER = """
import socket, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(1024)
    while True:
        s.accept()[0].close()
for port in (7000, 7001):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
threading.Event().wait()
"""
PROBER = """
import select, socket, sys, time
dst, port = sys.argv[1], int(sys.argv[2])
while True:
    s = socket.socket(); s.setblocking(False); s.connect_ex((dst, port))
    _, w, _ = select.select([], [s], [], 0.002)
    if w and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
        print(time.monotonic(), flush=True)
    s.close()
    time.sleep(0.001)
"""


def rule(group: str, **kw: Any) -> SecurityGroupRule:
    return SecurityGroupRule(project_id="p", security_group_id=group, **kw)


def rules_for(count: int) -> list[SecurityGroupRule]:
    """`count` distinct rules of every kind, spread over the 10 groups."""
    out = []
    for i in range(count):
        g = GROUPS[i % len(GROUPS)]
        kind = i % 4
        if kind == 0:
            out.append(rule(g, direction="ingress", protocol="tcp", port_range_min=10000 + i,
                            port_range_max=10000 + i + (i % 7)))
        elif kind == 1:
            out.append(rule(g, direction="ingress", protocol="udp", port_range_min=20000 + i,
                            remote_ip_prefix=f"172.{16 + i % 16}.{i % 256}.0/24"))
        elif kind == 2:
            out.append(rule(g, direction="ingress", protocol="tcp", port_range_min=30000 + i,
                            remote_group_id=GROUPS[(i + 3) % len(GROUPS)]))
        else:
            out.append(rule(g, direction="egress", protocol="tcp", port_range_min=40000 + i))
    return out + [rule(g, direction="egress") for g in GROUPS] + [
        rule(GROUPS[0], direction="ingress", protocol="tcp", port_range_min=7001,
             remote_group_id=PEERS)]


OPEN_RULE = rule(GROUPS[0], direction="ingress", protocol="tcp", port_range_min=7000)


def mkport(n: int) -> Port:
    return Port(id=f"{n:08x}-5555-4000-8000-{secrets.token_hex(6)}", project_id="p",
                network_id="net", mac_address=f"fa:16:3e:00:{n // 256:02x}:{n % 256:02x}",
                security_groups=[GROUPS[n % 10], GROUPS[(n + 1) % 10]],
                fixed_ips=[FixedIP(subnet_id="s", ip_address=f"10.8.{n // 200}.{10 + n % 200}")])


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def plug(rns: str, vns: str, port: Port) -> None:
    """A VM namespace on a veth whose host end is the port's tap, as the agent builds it."""
    tap, addr = naming.tap(port.id), port.ips[0]
    netns.create(vns)
    sysctl.write(vns, {"net/ipv6/conf/all/disable_ipv6": "1"})
    ip("-n", rns, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", vns)
    for args in (["link", "set", "lo", "up"], ["link", "set", "eth0", "address",
                                                port.mac_address, "up"],
                 ["addr", "add", f"{addr}/16", "dev", "eth0"],
                 ["route", "add", "default", "via", "10.8.0.1"]):
        ip("-n", vns, *args)
    ip("-n", rns, "link", "set", tap, "up")
    ip("-n", rns, "addr", "add", "10.8.0.1/16", "dev", tap, "noprefixroute")
    ip("-n", rns, "route", "add", f"{addr}/32", "dev", tap)
    ip("-n", rns, "neigh", "replace", addr, "lladdr", port.mac_address, "dev", tap,
       "nud", "permanent")
    sysctl.write(rns, dict(desired.tap_sysctls(tap)))


def stats(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(q[98], 2),
            "max_ms": round(ms[-1], 2), "samples": len(ms)}


def timed(func: Callable[[], Any]) -> float:
    start = time.monotonic()
    func()
    return time.monotonic() - start


class Prober:
    """Fresh TCP connections X → Y:port every ~2 ms; success times collected."""

    def __init__(self, ns: str, dst: str, port: int) -> None:
        self.proc = subprocess.Popen(process.in_ns(ns, [*PY, PROBER, dst, str(port)]),
                                     stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.ok: list[float] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.ok.append(float(line))

    def first_after(self, t0: float, timeout: float = 3.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [t for t in self.ok[-50:] if t > t0]
            if hits:
                return min(hits) - t0
            time.sleep(0.001)
        raise RuntimeError("flow did not open within 3 s")

    def last_after(self, t0: float, quiet: float = 0.3) -> float:
        time.sleep(quiet)
        hits = [t for t in self.ok[-500:] if t > t0]
        return (max(hits) - t0) if hits else 0.0

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=5)


def flips(rns: str, prober: Prober, allow: Callable[[], None], deny: Callable[[], None],
          samples: int) -> dict[str, Any]:
    opened, closed = [], []
    for _ in range(samples):
        t0 = time.monotonic()
        allow()
        opened.append(prober.first_after(t0))
        t0 = time.monotonic()
        deny()
        closed.append(prober.last_after(t0))
    return {"allow": stats(opened), "deny": stats(closed)}


class Node:
    """The agent's view: compile, plan against the digest it last wrote, apply."""

    def __init__(self, rns: str, ports: list[Port]) -> None:
        self.rns, self.ports, self.digest = rns, ports, None
        self.applied: sg.Ruleset | None = None  # what the agent tracks it applied
        self.changes: list[str] = []

    def members(self, peers: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {PEERS: peers}
        for port in self.ports:
            for group in port.security_groups:
                out.setdefault(group, []).append(port.ips[0])
        return out

    def update(self, rules: list[SecurityGroupRule], peers: list[str]) -> None:
        doc = sg.compile_ruleset(self.ports, rules, self.members(peers))
        for op in sg.plan_ruleset(self.rns, doc, self.digest, self.applied):
            nft.apply(op.ns, op.payload)
            self.changes.append(op.change)
        self.digest, self.applied = sg.ruleset_digest(doc), doc


def measure(rns: str, x: Port, y: Port, ports: list[Port], args: argparse.Namespace
            ) -> dict[str, Any]:
    base = rules_for(args.rules)
    node = Node(rns, ports)
    doc = sg.compile_ruleset(ports, base, node.members([]))
    out: dict[str, Any] = {
        "sg_rules": len(base), "ports_on_node": len(ports),
        "nft_rules": sum(1 for c in doc.document()["nftables"] if "rule" in c.get("add", {})),
        "payload_bytes": len(sg.render(doc)),
    }
    empty = sg.render(sg.compile_ruleset([], [], {}))
    out["baseline_empty_table_apply"] = stats([timed(lambda: nft.apply(rns, empty))
                                               for _ in range(args.samples)])
    out["compile"] = stats([timed(lambda: sg.compile_ruleset(ports, base, node.members([])))
                            for _ in range(args.samples)])
    docs = [sg.render(doc), sg.render(sg.compile_ruleset(ports, [*base, OPEN_RULE],
                                                         node.members([])))]
    out["replace_apply"] = stats([timed(lambda i=i: nft.apply(rns, docs[i % 2]))
                                  for i in range(args.samples)])
    nft.apply(rns, docs[0])
    with_x = sg.compile_ruleset(ports, base, node.members([x.ips[0]]))
    updates = [sg.render(sg.sets_update(with_x)), sg.render(sg.sets_update(doc))]
    out["sets_apply"] = stats([timed(lambda i=i: nft.apply(rns, updates[i % 2]))
                               for i in range(args.samples)])
    out["read_digest"] = stats([timed(lambda: nft.read_digest(rns))
                                for _ in range(args.samples)])
    node.update(base, [])
    for port, name, allow, deny in (
        (7000, "flip_rule_change", lambda: node.update([*base, OPEN_RULE], []),
         lambda: node.update(base, [])),
        (7001, "flip_membership_change", lambda: node.update(base, [x.ips[0]]),
         lambda: node.update(base, [])),
    ):
        prober = Prober(f"{rns[:-2]}-x", y.ips[0], port)
        try:
            time.sleep(0.3)
            assert not prober.ok, "flow open before the update: the bench is wrong"
            out[name] = flips(rns, prober, allow, deny, args.flip_samples)
        finally:
            prober.stop()
    out["flip_changes_seen"] = sorted(set(node.changes))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", type=int, default=1000)
    parser.add_argument("--ports", type=int, default=20)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--flip-samples", type=int, default=20)
    parser.add_argument("--output", default=RESULTS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        console.print("[red]needs root (network namespaces, nftables)[/red]")
        return 2
    prefix = "sg" + secrets.token_hex(3)
    rns, names = f"{prefix}-r", [f"{prefix}-r", f"{prefix}-x", f"{prefix}-y"]
    server = None
    try:
        netns.create(rns)
        ip("-n", rns, "link", "set", "lo", "up")
        sysctl.write(rns, dict(desired.NS_SYSCTLS))
        ports = [mkport(n) for n in range(args.ports)]
        y, x = ports[0], ports[1]
        plug(rns, f"{prefix}-y", y)
        plug(rns, f"{prefix}-x", x)
        server = process.spawn(f"{prefix}-y", [*PY, SERVER])
        with console.status(f"measuring {args.rules} rules on {args.ports} ports ..."):
            results = measure(rns, x, y, ports, args)
    finally:
        if server is not None:
            process.stop_child(server)
        process.kill_all_in(names)
        for name in names:
            netns.remove(name)
    results["prober_resolution_ms"] = 3
    results["machine"] = machine.facts()
    machine.write(args.output, results)
    show(results)
    console.print(f"wrote {args.output}")
    return 0


def show(r: dict[str, Any]) -> None:
    table = Table(title=f"security-group updates: {r['sg_rules']} SG rules, "
                        f"{r['ports_on_node']} ports → {r['nft_rules']} nft rules")
    for col in ("measure", "p50 ms", "p99 ms"):
        table.add_column(col)
    rows = [("baseline: empty-table transaction", r["baseline_empty_table_apply"]),
            ("compile (Python)", r["compile"]), ("apply full replace (nft)", r["replace_apply"]),
            ("apply set-element update (nft)", r["sets_apply"]),
            ("read digest (warm restart)", r["read_digest"])]
    for kind in ("flip_rule_change", "flip_membership_change"):
        for way in ("allow", "deny"):
            rows.append((f"{kind.replace('_', ' ')}: {way}", r[kind][way]))
    for name, s in rows:
        table.add_row(name, f"{s['p50_ms']:.1f}", f"{s['p99_ms']:.1f}")
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
