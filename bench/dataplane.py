"""Data-plane benchmark: throughput vs raw underlay (three paths), port-up latency, warm restart.

    sudo .venv/bin/python bench/dataplane.py [--samples 5] [--seconds 3] [--only throughput]

Builds its own testbeds (namespaces with a per-run prefix), measures, tears
them down whatever happens, prints a Rich table and writes
bench/results/dataplane.json (with `--only`, only where `--output` says).

Throughput (issue 5), on a 2-node testbed with the api, topology created as a
tenant would (TenantAPI): iperf3, one TCP stream, the same seconds per
sample, every path once per round and rounds interleaved (rotated), so drift
and other work on the machine hit every path alike. Each ratio is the median
of a path over the median of the raw underlay between the same two nodes
(node1 → node2 underlay addresses), from the same rounds:

- `throughput`: two VMs of one network, node1 → node2 (target 0.90);
- `routed_throughput`: a VM of subnet A on node1 → a VM of subnet B on node2
  through a distributed router realized on both nodes: routed on node1, one
  VXLAN crossing in B (target 0.85);
- `floating_ip_throughput`: the outside host (provider network) → the
  floating IP of the subnet-B VM on node2: in at node2's provider leg,
  DNAT in the router namespace there, no underlay at all (target 0.85).

The fairest raw reference for floating-IP traffic is not the underlay: that
path never touches it. It is the same provider wire ending in a plain host
stack at the node: `provider_gbps` is the outside host → a macvlan of node2's
provider interface (the same kind of device as the router's gateway leg) in a
namespace of its own. `ratio_to_provider` is thus the price of spanwire's
north-south machinery alone (macvlan → DNAT + conntrack → router leg →
routing namespace and security group → tap), and includes the tenant MTU
(1450: the VM's MTU applies even though this path has no encapsulation). The
provider and underlay segments are built alike (veth, bridge, veth; MTU
1500; since 2026-11-25 their bridges skip netfilter, `bridge-nf-call-*` = 0
in the underlay namespace, which makes both references about 3% cheaper), so
`ratio_of_medians` (against the underlay) stays the common denominator of
all three targets, and the two references can be compared.

Two CPU models, measured in the same interleaved rounds. The per-node model
is the testbed as built (`qualify/underlay.py`): what enters each "machine"
is steered by RPS to that machine's own CPU (node index mod CPUs: node1's
underlay and provider legs and the outside host's leg → CPU 1, node2's → CPU
0 on two CPUs), and here the iperf3 client runs on the sender's CPU, the
server on node2's, so each node's work runs on its own CPU, as on separate
hosts. `shared` clears those RPS masks for its samples (and restores them):
a veth delivers into the backlog of the CPU that sent, so one sender CPU does
all of node1's *and node2's* forwarding (VXLAN decap, node2's routing
namespace and security group, the tap) and the overlay pays both nodes' work
on one CPU, the raw underlay only a bridge hop, which understates the ratio
of two real machines. The headline `ratio_of_medians` of each block is the
per-node one (the testbed as built; runs before 2026-11-25's change to the
testbed headlined the shared model); `shared_cpu` holds the same fields.

This machine is a virtual machine on a shared host, and the hypervisor takes
CPU time from it at random (`steal` in /proc/stat; 20 to 35% of a sample's
CPU time in some samples on 2026-12-03). Each sample records the CPU seconds
stolen while it ran, and each ratio is also given from quiet samples only
(`quiet_ratio_of_medians`: samples that lost under 5% of their CPU time,
filtered alike on both sides; see `machine.quiet_ratio`).

The testbed's idle agents keep running, as in production (about 0.5% of a
core each since the SQLite store waits for writes instead of polling; 4 to
15% before 2026-12-03), which the underlay samples pay as much as the
others. Load averages: the one at the start tells how busy the machine was;
the later ones include the bench's own iperf3 (about 2).

Port-up latency and warm restart (`--only control`), on a 2-node testbed
without the api:

- port-up latency: from the port's store write to the first ping reply from a
  VM on another node (the VM's tap exists and is configured, as a hypervisor
  would have done), with 10/100/1000 ports in the cloud;
- warm restart: agent process start to its first (no-op) reconcile, with the
  largest scale's ports on its node.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import machine  # bench/machine.py, next to this script
from rich.console import Console
from rich.table import Table

from spanwire.agent import naming
from spanwire.dataplane import netns, process, rps, sysctl
from spanwire.qualify import cloud, steal, underlay, vm
from spanwire.qualify.tenant import TenantAPI
from spanwire.qualify.testbed import Testbed

console = Console()
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "dataplane.json")


def iperf(server_ns: str, client_ns: str, bind_ip: str, seconds: int,
          dst_ip: str | None = None, cpus: tuple[int, int] | None = None) -> float:
    """Gbit/s of one TCP stream from client_ns to dst_ip (default bind_ip), served in server_ns.

    `dst_ip` differs from `bind_ip` when a NAT sits between them (a floating
    IP); `cpus` pins (server, client) to those CPUs.
    """
    pin = (["-A", str(cpus[0])], ["-A", str(cpus[1])]) if cpus else ([], [])
    srv = process.spawn(server_ns, ["iperf3", "-s", "-1", "-B", bind_ip, *pin[0]])
    try:
        time.sleep(0.3)
        out = process.run(client_ns, ["iperf3", "-c", dst_ip or bind_ip, "-t", str(seconds),
                                      "-J", *pin[1]], timeout=seconds + 30).stdout
        data = json.loads(out)
        return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        process.stop_child(srv)


# One throughput path: (server namespace, client namespace, address served, address dialled).
Path = tuple[str, str, str, str]
PROJECT = "bench"
PROVIDER_REF_IP = "203.0.113.253"  # outside the provider network's allocation pool


def _provider_host(bed: Testbed, node: str) -> str:
    """A plain host on the provider network at `node`: a macvlan of its px0, in a namespace.

    It is the floating-IP path without spanwire: the same wire, bridge and veth
    up to the node's provider interface, and the same kind of device (a
    bridge-mode macvlan of px0) that the router's gateway leg is, but the
    packet ends in a host stack there instead of being NATed and routed on.
    The namespace is named with the testbed's prefix, so `down` removes it.
    """
    p = bed.state.prefix
    ns = f"{p}-pxref"
    netns.create(ns)
    sysctl.write(ns, {"net/ipv6/conf/all/disable_ipv6": "1"})
    bed.kernel.set_link(ns, "lo", up=True)
    bed.kernel.create_macvlan(underlay.node_ns(p, node), underlay.PROVIDER_IFACE, ns, "eth0",
                              "02:00:cb:00:71:fa", 1500)
    bed.kernel.set_link(ns, "eth0", up=True)
    plen = underlay.EXTERNAL_CIDR.split("/")[1]
    bed.kernel.addr(ns, "add", "eth0", f"{PROVIDER_REF_IP}/{plen}", noprefixroute=False)
    return ns


def paths(bed: Testbed) -> dict[str, Path]:
    """Build the throughput topology through the api; return the paths to measure.

    node1 → node2 everywhere: the raw underlay; two VMs of one network; a VM
    of subnet A to a VM of subnet B through the distributed router (realized
    on both nodes); the outside host to that second VM's floating IP; and the
    outside host to a plain host on the provider network at node2.
    """
    p = bed.state.prefix
    api = TenantAPI(bed.state.api_url, bed.state.state_dir)
    try:
        ext = bed.state.external_network  # the provider network, made by `up`
        api.network("bw", PROJECT, "10.70.0.0/24")
        subnet_a = api.network("ra", PROJECT, "10.71.0.0/24")
        subnet_b = api.network("rb", PROJECT, "10.72.0.0/24")
        router = api.router("rbench", PROJECT, [subnet_a, subnet_b], external_network=ext)
        group = api.public_group(PROJECT)  # ICMP and TCP from anywhere
        _, same1 = bed.vm_create("bw", "bw1", node="node1")
        _, same2 = bed.vm_create("bw", "bw2", node="node2")
        _, a1 = bed.vm_create("ra", "ra1", node="node1", security_groups=[group])
        port_b2, b2 = bed.vm_create("rb", "rb2", node="node2", security_groups=[group])
        assert same1 and same2 and a1 and b2
        fip = api.floating_ip(ext, PROJECT, port_b2.id)
    finally:
        api.close()
    bed.wait_gateways(router, {"node1", "node2"})
    ref = _provider_host(bed, "node2")
    out = underlay.outside_ns(p)
    return {
        "underlay": (underlay.node_ns(p, "node2"), underlay.node_ns(p, "node1"),
                     bed.state.nodes["node2"], bed.state.nodes["node2"]),
        "overlay": (vm.vm_ns(p, "bw2"), vm.vm_ns(p, "bw1"), same2.ip, same2.ip),
        "routed": (vm.vm_ns(p, "rb2"), vm.vm_ns(p, "ra1"), b2.ip, b2.ip),
        "provider": (ref, out, PROVIDER_REF_IP, PROVIDER_REF_IP),
        "floating_ip": (vm.vm_ns(p, "rb2"), out, b2.ip, fip),
    }


# CPU models of the two-node testbed (see the module docstring): "per_node" as
# built (each node's receive work on its own CPU), "shared" with steering cleared.
MODES = ("per_node", "shared")
NODES = {"node1": 1, "node2": 2}  # name → index, as Testbed.up numbers them
CPUS = os.cpu_count() or 1
# iperf3 (server, client) in the per-node model: node2's CPU (it serves every path,
# the provider host included), and node1's, which the outside host shares.
PINS = (underlay.rps_cpu(NODES["node2"], CPUS), underlay.rps_cpu(NODES["node1"], CPUS))


def _steer(bed: Testbed, per_node: bool) -> None:
    """The testbed's RPS masks as built (`underlay.steer`), or all cleared (the shared model).

    Only rps_cpus of links inside the testbed's own namespaces: nothing of the host.
    """
    for ns, dev, index in underlay.steered_legs(bed.state.prefix, NODES):
        rps.set_mask(bed.kernel, ns, dev, underlay.rps_mask(index, CPUS) if per_node else 0)


def measure(bed: Testbed, routes: dict[str, Path], samples: int, seconds: int
            ) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, list[float]]]]:
    """`samples` rounds of every path in every CPU model, interleaved (and rotated, so
    no path is always first): drift and other work on the machine hit all alike.

    Returns Gbit/s and, per sample, the CPU seconds the hypervisor took meanwhile
    (`steal.during`), both by model and path."""
    names, modes = list(routes), list(MODES if CPUS >= 2 else MODES[:1])
    gbps: dict[str, dict[str, list[float]]] = {m: {n: [] for n in names} for m in modes}
    stolen: dict[str, dict[str, list[float]]] = {m: {n: [] for n in names} for m in modes}
    try:
        for i in range(samples):
            for mode in modes[i % len(modes):] + modes[:i % len(modes)]:
                _steer(bed, mode == "per_node")
                cpus = PINS if mode == "per_node" and CPUS >= 2 else None
                for name in names[i % len(names):] + names[:i % len(names)]:
                    server, client, bind_ip, dst_ip = routes[name]
                    rate, lost, _ = steal.during(functools.partial(
                        iperf, server, client, bind_ip, seconds, dst_ip, cpus))
                    gbps[mode][name].append(rate)
                    stolen[mode][name].append(round(lost, 2))
    finally:
        _steer(bed, True)  # the testbed as built
    return gbps, stolen


def throughput(bed: Testbed, samples: int, seconds: int) -> dict[str, dict[str, Any]]:
    """The three ratios of issue 5, each against the same rounds' underlay samples."""
    load = [round(os.getloadavg()[0], 2)]
    gbps, stolen = measure(bed, paths(bed), samples, seconds)
    load.append(round(os.getloadavg()[0], 2))

    def ratios(mode: str, path: str) -> dict[str, Any]:
        g, s = gbps[mode], stolen[mode]
        out = {"overlay_gbps": g[path], "underlay_gbps": g["underlay"],
               "ratio_of_medians": statistics.median(g[path]) / statistics.median(g["underlay"]),
               "overlay_stolen_cpu_s": s[path], "underlay_stolen_cpu_s": s["underlay"],
               **machine.quiet_ratio(g[path], g["underlay"], s[path], s["underlay"], seconds)}
        if path == "floating_ip":
            out["provider_gbps"] = g["provider"]
            out["ratio_to_provider"] = statistics.median(g[path]) / statistics.median(
                g["provider"])
        return out

    def block(path: str, target: float) -> dict[str, Any]:
        out = ratios("per_node", path)
        out.update({"cpu_model": "per_node", "seconds_per_sample": seconds,
                    "target_ratio": target, "load_avg_1m_start_end": load})
        if "shared" in gbps:
            out["shared_cpu"] = ratios("shared", path)
        return out

    return {"throughput": block("overlay", 0.90), "routed_throughput": block("routed", 0.85),
            "floating_ip_throughput": block("floating_ip", 0.85)}


PROBER = r"""
import socket, struct, sys, time
dst, deadline = sys.argv[1], time.time() + float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xFFFF); t += t >> 16
    return ~t & 0xFFFF
seq, ident = 0, 0x5357
print("ready", flush=True)
while time.time() < deadline:
    seq += 1
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF) + b"spanwire"
    pkt = hdr[:2] + struct.pack("!H", csum(hdr)) + hdr[4:]
    try:
        s.sendto(pkt, (dst, 0))
    except OSError:
        pass
    end = time.time() + 0.001
    while (left := end - time.time()) > 0:
        # Blocks until a reply or the next send: polling would take CPU from the agents.
        s.settimeout(left)
        try:
            data = s.recv(2048)
        except OSError:  # the timeout, or an error the kernel reported
            break
        icmp = data[(data[0] & 15) * 4:]
        if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
            print("%.6f" % time.time(), flush=True)
            sys.exit(0)
sys.exit(1)
"""


def _background(bed: Testbed, net: Any, count: int, node: str) -> None:
    """`count` ports on `node` whose taps exist (a veth pair in the node namespace)."""
    store = bed.store()
    node_ns = underlay.node_ns(bed.state.prefix, node)
    for i in range(count):
        port = cloud.add_port(store, net, node, name=f"bg{i}")
        bed.kernel.create_veth(node_ns, naming.tap(port.id), f"bgv{port.id[:8]}", node_ns)


def port_up(bed: Testbed, scale: int, samples: int, node: str = "node1") -> dict[str, Any]:
    store = bed.store()
    net, sub = cloud.add_network(store, f"lat{scale}", vni=7100 + len(str(scale)),
                                 cidr="10.80.0.0/16")
    p = bed.state.prefix
    _, peer = bed.vm_create(net.name, f"peer{scale}", node="node2")
    assert peer
    # The prober VM re-ARPs every 5 ms instead of every 1 s (the kernel default):
    # otherwise we would measure the guest's ARP retry timer, not spanwire.
    sysctl.write(vm.vm_ns(p, f"peer{scale}"), {"net/ipv4/neigh/eth0/retrans_time_ms": "5"})
    current = 1 + len(bed.state.vms)
    _background(bed, net, max(0, scale - samples - 1), node)
    bed.wait_port_active([], timeout=1)
    _settle(bed, node)
    latencies, timeline = [], []
    for i in range(samples):
        name = f"l{scale}x{i}"
        ip = f"10.80.{200 + i // 250}.{1 + i % 250}"
        port = cloud.Port(project_id=net.project_id, network_id=net.id, name=name,
                          mac_address=f"fa:16:3e:7{i // 256:x}:{i % 256:02x}:{scale % 256:02x}",
                          fixed_ips=[cloud.FixedIP(subnet_id=sub.id, ip_address=ip)],
                          binding_host_id=node,
                          security_groups=[cloud.default_group(bed.store(), net.project_id)])
        ns = vm.create(bed.kernel, p, name, underlay.node_ns(p, node), port.id, port.mac_address)
        bed.state.vms[name] = {"node": node, "port": port.id, "network": net.id}
        process.run(ns, ["ip", "addr", "add", f"{ip}/16", "dev", "eth0"])
        process.run(ns, ["ip", "route", "add", "default", "via", sub.gateway_ip or ""])
        # A raw ICMP prober (every ms) instead of ping: ping slows down to 1/s
        # after the "unreachable" errors a not-yet-wired address produces.
        pinger = subprocess.Popen(
            process.in_ns(vm.vm_ns(p, f"peer{scale}"), [sys.executable, "-c", PROBER, ip, "10"]),
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert pinger.stdout is not None
        assert pinger.stdout.readline().strip() == "ready"
        t0 = time.time()
        store.put(port.key, port.to_bytes())
        line = pinger.stdout.readline().strip()
        pinger.wait(timeout=15)
        if not line:
            raise RuntimeError(f"port {port.id} never answered")
        first = float(line)
        latencies.append(1000 * (first - t0))
        # Wall-clock times, to line a sample up with the agents' logs (`--keep-logs`).
        timeline.append({"port": port.id, "put_at": round(t0, 6), "reply_at": round(first, 6)})
    bed.state.save()
    latencies.sort()
    total = current + scale
    return {"ports_in_cloud": total, "samples": len(latencies),
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "max_ms": latencies[-1], "all_ms": latencies, "timeline": timeline,
            "targets": {"p50_ms": 50, "p99_ms": 200}}


def _settle(bed: Testbed, node: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not bed.pending_ops(node):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{node} did not converge")


def warm_restart(bed: Testbed, node: str, runs: int = 3) -> dict[str, Any]:
    _settle(bed, node)
    totals, passes, writes = [], [], []
    for _ in range(runs):
        bed.stop_agent(node)
        before = len(bed.reconciles(node))  # once it has exited: its last pass is logged
        t0 = time.monotonic()
        bed.start_agent(node)
        counts = bed.wait_reconciles(node, before + 1, timeout=120)
        totals.append(time.monotonic() - t0)
        writes.append(counts[before])
        with open(bed.agent_log(node)) as handle:
            lines = [ln for ln in handle if "event=reconciled" in ln]
        passes.append(float(lines[before].split("duration_ms=")[1].split()[0]) / 1000)
    return {"process_start_to_converged_s": totals, "reconcile_pass_s": passes,
            "kernel_writes": writes, "target_s": 1.0}


def _bed(state_dir: str, name: str, api: bool, keep_logs: str,
         work: Callable[[Testbed], dict[str, Any]]) -> dict[str, Any]:
    """Run `work` on a fresh testbed, which goes down (logs kept if asked) however it ends."""
    bed = Testbed.up(os.path.join(state_dir, name), nodes=2, api=api)
    try:
        return work(bed)
    finally:
        if keep_logs:
            shutil.copytree(os.path.join(bed.state.state_dir, "logs"),
                            os.path.join(keep_logs, name), dirs_exist_ok=True)
        bed.down()


def control(bed: Testbed, scales: list[int], latency_samples: int) -> dict[str, Any]:
    results: dict[str, Any] = {"port_up": []}
    for scale in scales:
        with console.status(f"port-up latency with {scale} ports ..."):
            results["port_up"].append(port_up(bed, scale, latency_samples))
    with console.status("warm restart ..."):
        results["warm_restart"] = warm_restart(bed, "node1")
        results["warm_restart"]["ports_on_node"] = sum(
            1 for _ in bed.store().range(cloud.Port.prefix()).items)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=5, help="iperf3 samples per path")
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 seconds per sample")
    parser.add_argument("--scales", default="10,100,1000", help="ports in the cloud")
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--only", choices=("throughput", "control"),
                        help="run one part: throughput (the three ratios) or control "
                             "(port-up latency, warm restart); writes JSON only with --output")
    parser.add_argument("--output", default=None, help=f"JSON path (default {RESULTS})")
    parser.add_argument("--keep-logs", default="", help="copy the agents' logs here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        console.print("[red]needs root[/] (network namespaces)")
        return 2
    output = args.output or (None if args.only else RESULTS)
    state_dir = tempfile.mkdtemp(prefix="spanwire-bench-")
    os.chmod(state_dir, 0o755)
    started = time.monotonic()
    load = os.getloadavg()[0]
    results: dict[str, Any] = {}
    try:
        if args.only in (None, "throughput"):
            with console.status("throughput (api testbed, routers, floating IP) ..."):
                results.update(_bed(state_dir, "paths", True, args.keep_logs,
                                    lambda bed: throughput(bed, args.samples, args.seconds)))
        if args.only in (None, "control"):
            scales = [int(s) for s in args.scales.split(",")]
            results.update(_bed(state_dir, "control", False, args.keep_logs,
                                lambda bed: control(bed, scales, args.latency_samples)))
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    results = {"machine": machine.facts(load), **results,
               "runtime_s": round(time.monotonic() - started, 1)}
    show(results)
    if output:
        machine.write(output, results)
        console.print(f"wrote {output}")
    return 0


def show(r: dict[str, Any]) -> None:
    table = Table(title="spanwire data plane")
    for col in ("measure", "value", "target"):
        table.add_column(col)
    if "throughput" in r:
        labels = (("throughput", "same network, cross-node"),
                  ("routed_throughput", "routed A → B, cross-node"),
                  ("floating_ip_throughput", "outside → floating IP"))
        for model, pick in (("per-node CPU (as built)", lambda b: b),
                            ("shared CPU", lambda b: b.get("shared_cpu"))):
            if pick(r["throughput"]) is None:
                continue
            raw = statistics.median(pick(r["throughput"])["underlay_gbps"])
            table.add_row(f"[b]{model}[/]: underlay node1 → node2 (median Gbit/s)",
                          f"{raw:.2f}", "")
            for key, label in labels:
                t = pick(r[key])
                quiet = t.get("quiet_ratio_of_medians")
                table.add_row(f"  {label}: Gbit/s, / underlay (quiet samples only)",
                              f"{statistics.median(t['overlay_gbps']):.2f}, "
                              f"{t['ratio_of_medians']:.2f}"
                              + (f" ({quiet:.2f})" if quiet is not None else ""),
                              f">= {r[key]['target_ratio']:.2f}")
            f = pick(r["floating_ip_throughput"])
            table.add_row("  outside → plain provider host: Gbit/s; FIP / it",
                          f"{statistics.median(f['provider_gbps']):.2f}; "
                          f"{f['ratio_to_provider']:.2f}", "")
    for p in r.get("port_up", []):
        table.add_row(f"port-up p50 / p99, {p['ports_in_cloud']} ports",
                      f"{p['p50_ms']:.0f} / {p['p99_ms']:.0f} ms", "<= 50 / 200 ms")
    if "warm_restart" in r:
        w = r["warm_restart"]
        table.add_row(f"warm restart, {w['ports_on_node']} ports (process → converged)",
                      f"{statistics.median(w['process_start_to_converged_s']):.2f} s", "<= 1 s")
        table.add_row("  kernel writes on restart", str(w["kernel_writes"]), "0")
        table.add_row("  of which the reconcile pass",
                      f"{statistics.median(w['reconcile_pass_s']):.2f} s", "")
    m = r["machine"]
    table.add_row("load avg 1m, start / end",
                  f"{m['load_avg_1m_at_start']:.2f} / {m['load_avg_1m_at_end']:.2f}",
                  f"{m['cpus']} cpus")
    table.add_row("runtime", f"{r['runtime_s']:.0f} s", "")
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
