"""The one-machine underlay and provider network, each a bridge in one namespace.

    <prefix>-ul   bridge br0   ── ul<i> ═ veth ═ ul0 ── <prefix>-<node>  (10.255.0.<i>/24)
                  bridge brpub ── pp<i> ═ veth ═ px0 ── <prefix>-<node>  (no address: the
                                                                          agent's macvlans)
                               ── ppo   ═ veth ═ eth0 ── <prefix>-out    (203.0.113.1/24)

The provider network ("public", flat) is a second L2 segment: every node has
its own leg on it (DESIGN: no network node), and the "outside" host stands for
the world beyond the cloud (the external subnet's gateway).

Two settings make one machine behave more like separate hosts (both only in
namespaces of ours):

- each host's ingress legs (a node's `ul0` and `px0`, the outside host's
  `eth0`) steer their receive work (RPS) to that host's own CPU (`rps_cpu`:
  node index mod CPUs; the outside host shares node1's, see
  `OUTSIDE_CPU_AS_NODE`).
  A veth delivers into the backlog of the CPU that sent, so without it one
  CPU does the sender's *and* the receiver's work (VXLAN decap, the
  receiver's routing namespace, security group and VM) while the raw
  underlay pays only a bridge hop, which understates what an overlay path
  costs relative to it on two real machines;
- the bridges do not pass frames through netfilter: `br_netfilter` is built
  into the test kernel, and `bridge-nf-call-*` (per namespace) default to 1,
  so every frame crossing the underlay or provider bridge would run the
  `inet` hooks for nothing. They are set to 0 in the underlay namespace.

Nothing here touches the host's namespace: every link is created directly in
a namespace of ours.
"""

from __future__ import annotations

import contextlib
import os

from spanwire.dataplane import netns, process, rps, sysctl
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import SpanwireError

UNDERLAY_NET = "10.255.0"
BRIDGE = "br0"
PROVIDER_BRIDGE = "brpub"
PROVIDER_IFACE = "px0"  # each node's leg on the provider network
PHYSNET = "public"
# TEST-NET-3 (RFC 5737): documentation space, never routed on the internet.
EXTERNAL_CIDR = "203.0.113.0/24"
OUTSIDE_IP = "203.0.113.1"
EXTERNAL_POOL = ("203.0.113.10", "203.0.113.250")  # floating IPs and per-node SNAT addresses
EXTERNAL_NETWORK = "public"
NODE_LEGS = ("ul0", PROVIDER_IFACE)  # where traffic enters a node
OUTSIDE_LEGS = ("eth0",)  # where it enters the outside host
# The outside host's receive work shares node1's CPU. With two CPUs one of the
# three hosts must share; the outside host sends to the second node in both
# floating-IP bandwidth paths (bench/dataplane.py, qualify's class), which
# must cross CPUs, as two machines would. (SNAT, node1 → outside, does not.)
OUTSIDE_CPU_AS_NODE = 1
BRIDGE_NF = tuple(f"net/bridge/bridge-nf-call-{t}" for t in ("iptables", "ip6tables",
                                                              "arptables"))


def underlay_ns(prefix: str) -> str:
    return f"{prefix}-ul"


def node_ns(prefix: str, node: str) -> str:
    return f"{prefix}-{node}"


def node_ip(index: int) -> str:
    return f"{UNDERLAY_NET}.{index}"


def rps_cpu(index: int, cpus: int) -> int:
    """The CPU that does the receive work of node `index` (1, 2, ...) on `cpus` CPUs."""
    return index % max(cpus, 1)


def rps_mask(index: int, cpus: int) -> int:
    """The RPS mask of node `index`'s ingress legs: its CPU, or 0 (no steering) with one CPU,
    where there is nothing to steer to."""
    return 1 << rps_cpu(index, cpus) if cpus >= 2 else 0


def steered_legs(prefix: str, nodes: dict[str, int]) -> list[tuple[str, str, int]]:
    """(namespace, device, node index whose CPU it steers to) of every ingress leg of the
    testbed with nodes `nodes` (name → index): the outside host's, then each node's."""
    legs = [(outside_ns(prefix), dev, OUTSIDE_CPU_AS_NODE) for dev in OUTSIDE_LEGS]
    for name, index in sorted(nodes.items(), key=lambda item: item[1]):
        legs += [(node_ns(prefix, name), dev, index) for dev in NODE_LEGS]
    return legs


def steer(kernel: Kernel, ns: str, devs: tuple[str, ...], index: int) -> None:
    """Steer what `devs` in `ns` receive to node `index`'s CPU (see the module docstring)."""
    for dev in devs:
        rps.set_mask(kernel, ns, dev, rps_mask(index, os.cpu_count() or 1))


def build_underlay(kernel: Kernel, prefix: str, mtu: int = 1500) -> None:
    ns = underlay_ns(prefix)
    _host(kernel, ns)
    # Absent without br_netfilter: then the bridges skip netfilter anyway.
    if all(v is not None for v in sysctl.read(ns, BRIDGE_NF).values()):
        sysctl.write(ns, dict.fromkeys(BRIDGE_NF, "0"))
    _bridge(kernel, ns, BRIDGE, mtu)
    _bridge(kernel, ns, PROVIDER_BRIDGE, mtu)


def _host(kernel: Kernel, ns: str) -> None:
    """A fresh namespace of the testbed: IPv4 only, loopback up."""
    netns.create(ns)
    sysctl.write(ns, {"net/ipv6/conf/default/disable_ipv6": "1",
                      "net/ipv6/conf/all/disable_ipv6": "1"})
    kernel.set_link(ns, "lo", up=True)


def outside_ns(prefix: str) -> str:
    return f"{prefix}-out"


def _bridge(kernel: Kernel, ns: str, name: str, mtu: int) -> None:
    if not any(link.name == name for link in kernel.links(ns)):
        kernel.create_bridge(ns, name)
    kernel.set_link(ns, name, mtu=mtu, up=True)


def _plug(kernel: Kernel, prefix: str, bridge: str, port: str, ns: str, dev: str,
          mtu: int) -> None:
    """A veth from `bridge` (underlay namespace) to `dev` in `ns`, both up."""
    ul = underlay_ns(prefix)
    if not any(link.name == dev for link in kernel.links(ns)):
        kernel.create_veth(ul, port, dev, ns, mtu=mtu)
    kernel.set_master(ul, port, bridge)
    kernel.set_link(ul, port, mtu=mtu, up=True)
    kernel.set_link(ns, dev, mtu=mtu, up=True)


def build_outside(kernel: Kernel, prefix: str, mtu: int = 1500) -> str:
    """The host beyond the provider network; returns its namespace."""
    ns = outside_ns(prefix)
    _host(kernel, ns)
    _plug(kernel, prefix, PROVIDER_BRIDGE, "ppo", ns, "eth0", mtu)
    plen = EXTERNAL_CIDR.split("/")[1]
    with contextlib.suppress(SpanwireError):
        kernel.addr(ns, "add", "eth0", f"{OUTSIDE_IP}/{plen}", noprefixroute=False)
    steer(kernel, ns, OUTSIDE_LEGS, OUTSIDE_CPU_AS_NODE)
    return ns


def build_node(kernel: Kernel, prefix: str, node: str, index: int, mtu: int = 1500) -> str:
    """Create the node's namespace with its underlay leg; return its underlay IP."""
    ns = node_ns(prefix, node)
    _host(kernel, ns)
    _plug(kernel, prefix, BRIDGE, f"ul{index}", ns, "ul0", mtu)
    _plug(kernel, prefix, PROVIDER_BRIDGE, f"pp{index}", ns, PROVIDER_IFACE, mtu)
    steer(kernel, ns, NODE_LEGS, index)
    ip = node_ip(index)
    with contextlib.suppress(SpanwireError):
        kernel.addr(ns, "add", "ul0", f"{ip}/24", noprefixroute=False)
    return ip


def destroy(kernel: Kernel, prefix: str) -> list[str]:
    """Delete every namespace whose name starts with `prefix-`; return their names."""
    names = netns.list_names(prefix + "-")
    process.kill_all_in(names)
    for name in names:
        with contextlib.suppress(SpanwireError, OSError):
            for link in kernel.links(name):
                if link.name != "lo":
                    kernel.delete_link(name, link.name)
        kernel.forget(name)
        with contextlib.suppress(OSError):
            netns.remove(name)
    return names
