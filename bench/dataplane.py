"""Data-plane benchmark: overlay throughput vs raw underlay, port-up latency, warm restart.

    sudo .venv/bin/python bench/dataplane.py [--samples 5] [--scales 10,100,1000]

Builds its own testbed (namespaces with a per-run prefix), measures, tears it
all down, prints a Rich table and writes bench/results/dataplane.json.

- throughput: iperf3 TCP between two VMs of one network on different nodes,
  and between the same two nodes' underlay addresses, interleaved, as a ratio;
- port-up latency: from the port's store write to the first ping reply from a
  VM on another node (the VM's tap exists and is configured, as a hypervisor
  would have done), with 10/100/1000 ports in the cloud;
- warm restart: agent process start to its first (no-op) reconcile, with the
  largest scale's ports on its node.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import machine  # bench/machine.py, next to this script
from rich.console import Console
from rich.table import Table

from spanwire.agent import naming
from spanwire.dataplane import process, sysctl
from spanwire.qualify import cloud, underlay, vm
from spanwire.qualify.testbed import Testbed

console = Console()
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "dataplane.json")


def iperf(bed: Testbed, server_ns: str, client_ns: str, ip: str, seconds: int) -> float:
    """Gbit/s of one TCP stream from client_ns to ip (served in server_ns)."""
    srv = process.spawn(server_ns, ["iperf3", "-s", "-1", "-B", ip])
    try:
        time.sleep(0.3)
        out = process.run(client_ns, ["iperf3", "-c", ip, "-t", str(seconds), "-J"],
                          timeout=seconds + 30).stdout
        data = json.loads(out)
        return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        process.stop_child(srv)


def throughput(bed: Testbed, samples: int, seconds: int) -> dict[str, Any]:
    cloud.add_network(bed.store(), "bw", vni=7001, cidr="10.70.0.0/24")
    _, l1 = bed.vm_create("bw", "bw1", node="node1")
    _, l2 = bed.vm_create("bw", "bw2", node="node2")
    assert l1 and l2
    p = bed.state.prefix
    overlay, raw = [], []
    for _ in range(samples):  # interleaved, so drift hits both alike
        raw.append(iperf(bed, underlay.node_ns(p, "node2"), underlay.node_ns(p, "node1"),
                         bed.state.nodes["node2"], seconds))
        overlay.append(iperf(bed, vm.vm_ns(p, "bw2"), vm.vm_ns(p, "bw1"), l2.ip, seconds))
    ratio = statistics.median(overlay) / statistics.median(raw)
    return {"overlay_gbps": overlay, "underlay_gbps": raw, "ratio_of_medians": ratio,
            "seconds_per_sample": seconds, "target_ratio": 0.90}


PROBER = r"""
import socket, struct, sys, time
dst, deadline = sys.argv[1], time.time() + float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.setblocking(False)
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
    while time.time() < end:
        try:
            data = s.recv(2048)
        except BlockingIOError:
            time.sleep(0.0002)
            continue
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
    latencies = []
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
    bed.state.save()
    latencies.sort()
    total = current + scale
    return {"ports_in_cloud": total, "samples": len(latencies),
            "p50_ms": statistics.median(latencies),
            "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "max_ms": latencies[-1], "all_ms": latencies,
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
        before = len(bed.reconciles(node))
        bed.stop_agent(node)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=5, help="iperf3 samples per path")
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 seconds per sample")
    parser.add_argument("--scales", default="10,100,1000", help="ports in the cloud")
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--output", default=RESULTS)
    parser.add_argument("--keep-logs", default="", help="copy the agents' logs here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        console.print("[red]needs root[/] (network namespaces)")
        return 2
    state_dir = tempfile.mkdtemp(prefix="spanwire-bench-")
    os.chmod(state_dir, 0o755)
    results: dict[str, Any] = {"machine": machine.facts(os.getloadavg()[0])}
    bed = Testbed.up(os.path.join(state_dir, "bed"), nodes=2, api=False)
    try:
        with console.status("throughput ..."):
            results["throughput"] = throughput(bed, args.samples, args.seconds)
        results["port_up"] = []
        for scale in [int(s) for s in args.scales.split(",")]:
            with console.status(f"port-up latency with {scale} ports ..."):
                results["port_up"].append(port_up(bed, scale, args.latency_samples))
        with console.status("warm restart ..."):
            results["warm_restart"] = warm_restart(bed, "node1")
            results["warm_restart"]["ports_on_node"] = sum(
                1 for _ in bed.store().range(cloud.Port.prefix()).items)
    finally:
        if args.keep_logs:
            shutil.copytree(os.path.join(bed.state.state_dir, "logs"), args.keep_logs,
                            dirs_exist_ok=True)
        bed.down()
        shutil.rmtree(state_dir, ignore_errors=True)
    machine.write(args.output, results)
    show(results)
    console.print(f"wrote {args.output}")
    return 0


def show(r: dict[str, Any]) -> None:
    table = Table(title="spanwire data plane")
    for col in ("measure", "value", "target"):
        table.add_column(col)
    t = r["throughput"]
    table.add_row("overlay TCP (median Gbit/s)", f"{statistics.median(t['overlay_gbps']):.2f}",
                  "")
    table.add_row("underlay TCP (median Gbit/s)", f"{statistics.median(t['underlay_gbps']):.2f}",
                  "")
    table.add_row("overlay / underlay", f"{t['ratio_of_medians']:.2f}", ">= 0.90")
    for p in r["port_up"]:
        table.add_row(f"port-up p50 / p99, {p['ports_in_cloud']} ports",
                      f"{p['p50_ms']:.0f} / {p['p99_ms']:.0f} ms", "<= 50 / 200 ms")
    w = r["warm_restart"]
    table.add_row(f"warm restart, {w['ports_on_node']} ports (process → converged)",
                  f"{statistics.median(w['process_start_to_converged_s']):.2f} s", "<= 1 s")
    table.add_row("  kernel writes on restart", str(w["kernel_writes"]), "0")
    table.add_row("  of which the reconcile pass",
                  f"{statistics.median(w['reconcile_pass_s']):.2f} s", "")
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
