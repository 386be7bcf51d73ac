"""How close to the raw underlay the design's data path can get on this machine, without spanwire.

    sudo .venv/bin/python bench/overlay_ceiling.py [--rounds 16] [--seconds 3]

Issues 4 and 5 ask for TCP throughput of at least 0.90 (same network) and
0.85 (routed) of the raw underlay. This script asks what any implementation
of DESIGN.md's data path could reach here, by building that path by hand with
`ip`, `nft` and `tc` (nothing of spanwire's agent, compiler or testbed),
exactly as the agent builds it: two nodes on a veth-bridge-veth underlay; per
node and network a routing namespace holding a VXLAN device (created in the
node, moved in; static FDB and neighbour toward the peer, no learning, a /32
route per remote VM via the peer), a tap per local VM with the anycast
gateway address, proxy ARP and a /32 route; VM namespaces behind the taps
with MTU 1450; and a router namespace per node joined to both networks'
namespaces by veth legs (the same link-local /31 on every leg), so a routed
packet is routed on its sender's node and crosses the underlay once. CPUs as
the testbed assigns them (`qualify/underlay.py`): each node's receive work
on its own CPU (RPS on its underlay leg), the iperf3 client on node1's CPU,
the server on node2's.

Per round (rotated, so no variant is always first), one iperf3 TCP stream
node1 → node2 for each of:

- `underlay`: node namespace to node namespace (the reference);
- `bare`: VM to VM in network B with no netfilter at all anywhere (the
  ceiling: no security groups, no conntrack);
- `stateful`: the same with the least stateful filtering costs, an `inet`
  table in every routing and router namespace whose forward chain accepts
  `ct state established,related` first (conntrack in each);
- `fastpath` (only where clang and bpftool are installed): `stateful` plus
  `ceiling_fastpath.bpf.c` on network B's taps and VXLAN devices (tc
  ingress), which sends established TCP past the routing namespaces' IP
  stack and netfilter;
- `routed_bare`, `routed_stateful`: a VM of network A on node1 to the VM of
  network B on node2, through the router: A → router → B on node1, VXLAN,
  B on node2 (the reply: B → router → A on node2, VXLAN, A on node1).

Then one probe of BIG TCP (`gso_ipv4_max_size` 196608 on every device of the
same-network path): whether this kernel carries GSO packets larger than 64 KB
through VXLAN (it answers whether that lever exists, not a ratio).

The machine is a virtual machine on a shared host: each sample records the CPU
seconds the hypervisor stole while it ran, and ratios are also given from quiet
samples only (`machine.quiet_ratio`). Every namespace has the per-run prefix
and is removed whatever happens; the host's links, routes, sysctls and ruleset
are never touched (`ip -n`, `ip netns exec`). Writes
bench/results/overlay_ceiling.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import machine  # bench/machine.py, next to this script
from rich.console import Console
from rich.table import Table

from spanwire.dataplane import netns, process, rps
from spanwire.dataplane.kernel import Kernel
from spanwire.qualify import steal, underlay

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = f"oc{os.getpid() % 100000}"
UL = "10.250.0.{}"  # underlay addresses, inside the run's namespaces only
VM_B = "10.251.0.{}"  # network B's subnet 10.251.0.0/24; .1 is the anycast gateway
VM_MTU = 1500 - 50
BIG_GSO = 196608
VARIANTS = ("underlay", "bare", "stateful", "fastpath", "routed_bare", "routed_stateful")
CPUS = os.cpu_count() or 1
# iperf3 (server, client): node2's CPU and node1's, as the testbed assigns them
PINS = (underlay.rps_cpu(2, CPUS), underlay.rps_cpu(1, CPUS))

# The least stateful filtering costs: conntrack, and established flows accepted first. No
# `invalid` drop in the base chain, as in spanwire's tables (only port chains drop it): a
# router namespace sees half of a routed connection (its reply is routed on the other node).
SG_TABLE = """table inet ceiling {
    chain forward {
        type filter hook forward priority 0; policy accept;
        ct state established,related accept
    }
}
"""


def ns(role: str) -> str:
    return f"{PREFIX}-{role}"


def ip(*argv: str) -> str:
    return subprocess.run(["ip", *argv], check=True, capture_output=True, text=True).stdout


def mac_of(namespace: str, dev: str) -> str:
    return json.loads(ip("-j", "-n", namespace, "link", "show", dev))[0]["address"]


# The two tenant networks: B (two VMs, one per node) and A (one VM, on node1), joined by
# a router realized on both nodes, as spanwire realizes one (`agent/routers.py`).
NETS = {"b": (100, "10.251.0.{}", {1: "v1", 2: "v2"}), "a": (101, "10.252.0.{}", {1: "va"})}
LEG_ROUTER, LEG_NETWORK = "169.254.0.0", "169.254.0.1"  # every leg, as `naming.LEG_*`


def node_mac(i: int, vni: int) -> str:
    return f"02:00:0a:{vni - 100:02x}:00:0{i}"


def routing_namespace(kernel: Kernel, i: int, net: str) -> None:
    """Network `net` on node `i`: VXLAN device (created in the node, moved in), a tap with
    the anycast gateway, proxy ARP and a /32 per local VM, a /32 via the peer per remote one."""
    vni, addr, vms = NETS[net]
    node, rt, vx = ns(f"n{i}"), ns(f"{net}{i}"), f"vx{vni}"
    ip("-n", node, "link", "add", vx, "address", node_mac(i, vni), "type", "vxlan", "id",
       str(vni), "local", UL.format(i), "dstport", "4789", "nolearning", "dev", "ul0")
    ip("-n", node, "link", "set", vx, "netns", rt)
    ip("-n", rt, "link", "set", vx, "mtu", str(VM_MTU), "up")
    sysctls = ["net.ipv4.ip_forward=1",
               # what a fast path that hides data from conntrack needs (as nf_flow_table)
               "net.netfilter.nf_conntrack_tcp_be_liberal=1"]
    for host, role in vms.items():
        host_ip = addr.format(10 + host)
        if host != i:
            ip("-n", rt, "route", "add", f"{host_ip}/32", "via", UL.format(host), "dev", vx,
               "onlink")
            continue
        vm, tap = ns(role), f"t{role}"
        netns.create(vm)
        ip("-n", vm, "link", "set", "lo", "up")
        ip("-n", rt, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", vm)
        ip("-n", rt, "link", "set", tap, "mtu", str(VM_MTU), "up")
        ip("-n", rt, "addr", "add", f"{addr.format(1)}/24", "dev", tap, "noprefixroute")
        ip("-n", vm, "link", "set", "eth0", "mtu", str(VM_MTU), "up")
        ip("-n", vm, "addr", "add", f"{host_ip}/24", "dev", "eth0")
        ip("-n", vm, "route", "add", "default", "via", addr.format(1))
        ip("-n", rt, "route", "add", f"{host_ip}/32", "dev", tap)
        ip("-n", rt, "neigh", "replace", host_ip, "lladdr", mac_of(vm, "eth0"), "dev", tap,
           "nud", "permanent")
        sysctls += [f"net.ipv4.conf.{tap}.proxy_arp=1", f"net.ipv4.neigh.{tap}.proxy_delay=0"]
        subprocess.run(["tc", "-n", rt, "qdisc", "add", "dev", tap, "clsact"], check=True)
    process.run(rt, ["sysctl", "-qw", *sysctls])
    subprocess.run(["tc", "-n", rt, "qdisc", "add", "dev", vx, "clsact"], check=True)
    peer = 3 - i
    ip("-n", rt, "neigh", "replace", UL.format(peer), "lladdr", node_mac(peer, vni), "dev", vx,
       "nud", "permanent")
    subprocess.run(["bridge", "-n", rt, "fdb", "append", node_mac(peer, vni), "dev", vx, "dst",
                    UL.format(peer), "self", "permanent"], check=True)


def router_namespace(i: int) -> None:
    """The router on node `i`: one leg per network, the same link-local /31 on each."""
    router = ns(f"rt{i}")
    process.run(router, ["sysctl", "-qw", "net.ipv4.ip_forward=1",
                         "net.netfilter.nf_conntrack_tcp_be_liberal=1"])
    for net, (_, addr, _) in NETS.items():
        rt, leg = ns(f"{net}{i}"), f"l{net}"
        ip("-n", router, "link", "add", leg, "type", "veth", "peer", "name", "lr", "netns", rt)
        ip("-n", router, "addr", "add", f"{LEG_ROUTER}/31", "dev", leg)
        ip("-n", rt, "addr", "add", f"{LEG_NETWORK}/31", "dev", "lr")
        for where, dev in ((router, leg), (rt, "lr")):
            ip("-n", where, "link", "set", dev, "mtu", str(VM_MTU), "up")
        ip("-n", router, "route", "add", addr.format(0) + "/24", "via", LEG_NETWORK, "dev", leg,
           "onlink")
        for other, (_, other_addr, _) in NETS.items():
            if other != net:
                ip("-n", rt, "route", "add", other_addr.format(0) + "/24", "via", LEG_ROUTER,
                   "dev", "lr", "onlink")


def build(kernel: Kernel) -> None:
    """The two-node data path of DESIGN.md (see the module docstring), by hand."""
    for role in ("u", "n1", "n2", "b1", "b2", "a1", "a2", "rt1", "rt2"):
        netns.create(ns(role))
        ip("-n", ns(role), "link", "set", "lo", "up")
    u = ns("u")
    ip("-n", u, "link", "add", "br0", "type", "bridge")
    ip("-n", u, "link", "set", "br0", "up")
    process.run(u, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"], check=False)
    for i in (1, 2):
        node = ns(f"n{i}")
        ip("-n", u, "link", "add", f"p{i}", "type", "veth", "peer", "name", "ul0", "netns", node)
        ip("-n", u, "link", "set", f"p{i}", "master", "br0", "up")
        ip("-n", node, "addr", "add", f"{UL.format(i)}/24", "dev", "ul0")
        ip("-n", node, "link", "set", "ul0", "up")
        rps.set_mask(kernel, node, "ul0", underlay.rps_mask(i, CPUS))
        for net in NETS:
            routing_namespace(kernel, i, net)
        router_namespace(i)
    process.run(ns("v1"), ["ping", "-c", "1", "-W", "2", VM_B.format(12)])
    process.run(ns("va"), ["ping", "-c", "1", "-W", "2", VM_B.format(12)])


def fastpath_object(workdir: str) -> str | None:
    """The compiled fast path, or None where clang or bpftool is missing."""
    if not (shutil.which("clang") and shutil.which("bpftool")):
        return None
    obj = os.path.join(workdir, "fastpath.o")
    arch = os.uname().machine
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", f"-I/usr/include/{arch}-linux-gnu",
                    "-c", os.path.join(HERE, "ceiling_fastpath.bpf.c"), "-o", obj],
                   check=True, capture_output=True)
    return obj


def set_variant(variant: str, obj: str | None) -> None:
    """Put every routing and router namespace in the state `variant` measures."""
    stateful = variant.endswith("stateful") or variant == "fastpath"
    for space in ("b1", "b2", "a1", "a2", "rt1", "rt2"):
        have = "ceiling" in process.run(ns(space), ["nft", "list", "tables"]).stdout
        if stateful and not have:
            process.run_input(ns(space), ["nft", "-f", "-"], SG_TABLE)
        elif not stateful and have:
            process.run(ns(space), ["nft", "delete", "table", "inet", "ceiling"])
    for i in (1, 2):
        for dev, section in ((f"tv{i}", "classifier/tap"), ("vx100", "classifier/fabric")):
            subprocess.run(["tc", "-n", ns(f"b{i}"), "filter", "del", "dev", dev, "ingress"],
                           check=False, capture_output=True)
            if variant == "fastpath" and obj:
                subprocess.run(["tc", "-n", ns(f"b{i}"), "filter", "add", "dev", dev, "ingress",
                                "bpf", "da", "obj", obj, "sec", section], check=True,
                               capture_output=True)


def iperf(server_ns: str, client_ns: str, addr: str, seconds: int) -> float:
    srv = process.spawn(server_ns, ["iperf3", "-s", "-1", "-B", addr, "-A", str(PINS[0])])
    try:
        time.sleep(0.3)
        out = process.run(client_ns, ["iperf3", "-c", addr, "-t", str(seconds), "-J",
                                      "-A", str(PINS[1])], timeout=seconds + 30).stdout
        return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9
    finally:
        process.stop_child(srv)


def sample(variant: str, obj: str | None, seconds: int) -> tuple[float, float]:
    """Gbit/s of one stream over `variant`, and the CPU seconds stolen meanwhile."""
    if variant == "underlay":
        gbps, stolen, _ = steal.during(lambda: iperf(ns("n2"), ns("n1"), UL.format(2), seconds))
    else:
        set_variant(variant, obj)
        client = ns("va") if variant.startswith("routed") else ns("v1")
        gbps, stolen, _ = steal.during(lambda: iperf(ns("v2"), client, VM_B.format(12), seconds))
    return gbps, round(stolen, 2)


FASTPATH_COUNTERS = ("fast_from_vxlan", "fast_from_tap", "slow_other", "slow_tcp_flags",
                     "slow_source_check", "slow_no_conntrack", "slow_conntrack_state",
                     "slow_fib")


def fastpath_hits(totals: dict[str, int]) -> None:
    """Add the attached fast path's counters (over CPUs and both namespaces) to `totals`:
    the proof that it ran, and why packets did not take it. Its maps go with it when it
    is detached, so this is read after each of its samples."""
    for m in json.loads(subprocess.run(["bpftool", "-j", "map", "list"], check=True,
                                       capture_output=True, text=True).stdout):
        if m.get("name") != "fp_stats":
            continue
        dump = json.loads(subprocess.run(["bpftool", "-j", "map", "dump", "id", str(m["id"])],
                                         check=True, capture_output=True, text=True).stdout)
        for entry, name in zip(dump, FASTPATH_COUNTERS, strict=False):
            values = entry.get("values") or entry["formatted"]["values"]
            for v in values:
                raw = v["value"]
                count = (int.from_bytes(bytes(int(x, 16) for x in raw), "little")
                         if isinstance(raw, list) else int(raw))
                totals[name] = totals.get(name, 0) + count


def _set_gso(dev: str, size: int) -> None:
    """IFLA_GSO_MAX_SIZE, IFLA_GRO_MAX_SIZE, IFLA_GSO_IPV4_MAX_SIZE, IFLA_GRO_IPV4_MAX_SIZE
    of `dev` in the calling thread's namespace (pyroute2 0.9 and iproute2 6.1 know no
    IPv4 ones)."""
    attrs = b"".join(struct.pack("=HHI", 8, kind, size) for kind in (41, 58, 63, 64))
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, socket.if_nametoindex(dev), 0, 0) + attrs
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.send(struct.pack("=IHHII", 16 + len(body), 16, 0x5, 1, 0) + body)  # NEWLINK, ACK
        errno = struct.unpack("=i", sock.recv(4096)[16:20])[0]
    if errno:
        raise OSError(-errno, f"setting GSO size {size} on {dev}: {os.strerror(-errno)}")


@contextlib.contextmanager
def big_tcp() -> Iterator[None]:
    """Every device of both paths at BIG_GSO for the duration, then back to 64 KB."""
    devices = [(ns("u"), d) for d in ("br0", "p1", "p2")] + [
        (ns(f"{role}{i}"), d) for i in (1, 2)
        for role, d in (("n", "ul0"), ("b", "vx100"), ("b", f"tv{i}"), ("v", "eth0"))]
    try:
        for name, dev in devices:
            netns.run_in(name, lambda dev=dev: _set_gso(dev, BIG_GSO))
        yield
    finally:
        for name, dev in devices:
            with contextlib.suppress(OSError):
                netns.run_in(name, lambda dev=dev: _set_gso(dev, 65536))


def teardown() -> None:
    for name in netns.list_names(PREFIX + "-"):
        process.kill_all_in([name])
        netns.remove(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=3)
    ap.add_argument("--output", default=os.path.join(HERE, "results", "overlay_ceiling.json"))
    args = ap.parse_args()
    console = Console()
    load = round(os.getloadavg()[0], 2)
    kernel = Kernel()
    workdir = tempfile.mkdtemp(prefix=PREFIX)
    gbps: dict[str, list[float]] = {}
    stolen: dict[str, list[float]] = {}
    hits: dict[str, int] = {}
    try:
        build(kernel)
        obj = fastpath_object(workdir)
        variants = [v for v in VARIANTS if v != "fastpath" or obj]
        gbps = {v: [] for v in variants}
        stolen = {v: [] for v in variants}
        with console.status("measuring") as status:
            for r in range(args.rounds):
                for v in variants[r % len(variants):] + variants[:r % len(variants)]:
                    status.update(f"round {r + 1}/{args.rounds}: {v}")
                    rate, lost = sample(v, obj, args.seconds)
                    gbps[v].append(rate)
                    stolen[v].append(lost)
                    if v == "fastpath":
                        fastpath_hits(hits)
            status.update("BIG TCP probe")
            set_variant("bare", obj)
            with big_tcp():
                big = {"underlay": sample("underlay", obj, args.seconds)[0],
                       "bare": sample("bare", obj, args.seconds)[0]}
    finally:
        kernel.close()
        teardown()
        shutil.rmtree(workdir, ignore_errors=True)
    med = {v: statistics.median(s) for v, s in gbps.items()}
    paired = {v: statistics.median(x / u for x, u in zip(s, gbps["underlay"], strict=True))
              for v, s in gbps.items()}
    result: dict[str, Any] = {
        "machine": machine.facts(load),
        "rounds": args.rounds, "seconds_per_sample": args.seconds, "cpu_model": "per_node",
        "gbps": gbps, "median_gbps": med,
        # CPU seconds the hypervisor took during each sample (of CPUs times seconds)
        "stolen_cpu_s": stolen,
        "ratio_of_medians": {v: med[v] / med["underlay"] for v in gbps},
        "paired_ratio_median": paired,
        "quiet": {v: machine.quiet_ratio(gbps[v], gbps["underlay"], stolen[v],
                                         stolen["underlay"], args.seconds) for v in gbps},
        "fastpath_packets": hits or None,
        "big_tcp_probe": {"gso_ipv4_max_size": BIG_GSO, "gbps": big,
                          "overlay_to_underlay": big["bare"] / big["underlay"]},
    }
    machine.write(args.output, result)
    table = Table(title=f"overlay ceiling, {args.rounds} rounds of {args.seconds} s, per-node CPUs")
    for col in ("variant", "median Gbit/s", "ratio of medians", "paired ratio, median",
                "quiet samples: ratio (n)"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for v in gbps:
        q = result["quiet"][v]
        quiet = "-" if q["quiet_ratio_of_medians"] is None else \
            f"{q['quiet_ratio_of_medians']:.3f} ({q['quiet_samples'][0]})"
        table.add_row(v, f"{med[v]:.2f}", f"{med[v] / med['underlay']:.3f}", f"{paired[v]:.3f}",
                      quiet)
    console.print(table)
    console.print(f"BIG TCP ({BIG_GSO} B GSO): underlay {big['underlay']:.2f} Gbit/s, "
                  f"overlay {big['bare']:.2f} Gbit/s")
    if hits:
        console.print(f"fast path: {hits}")
    console.print(f"CPU seconds stolen by the hypervisor per sample, median: "
                  f"{statistics.median(x for v in stolen.values() for x in v):.2f} "
                  f"of {2 * args.seconds}")
    console.print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
