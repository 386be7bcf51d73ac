"""The one-machine underlay: a bridge in its own namespace, one namespace per node.

    <prefix>-ul   bridge br0 ── ul<i> ═ veth ═ ul0 ── <prefix>-<node>  (10.255.0.<i>/24)

Nothing here touches the host's namespace: every link is created directly in
a namespace of ours.
"""

from __future__ import annotations

import contextlib

from spanwire.dataplane import netns, process, sysctl
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import SpanwireError

UNDERLAY_NET = "10.255.0"
BRIDGE = "br0"


def underlay_ns(prefix: str) -> str:
    return f"{prefix}-ul"


def node_ns(prefix: str, node: str) -> str:
    return f"{prefix}-{node}"


def node_ip(index: int) -> str:
    return f"{UNDERLAY_NET}.{index}"


def build_underlay(kernel: Kernel, prefix: str, mtu: int = 1500) -> None:
    ns = underlay_ns(prefix)
    netns.create(ns)
    sysctl.write(ns, {"net/ipv6/conf/default/disable_ipv6": "1",
                      "net/ipv6/conf/all/disable_ipv6": "1"})
    kernel.set_link(ns, "lo", up=True)
    if not any(link.name == BRIDGE for link in kernel.links(ns)):
        kernel.create_bridge(ns, BRIDGE)
    kernel.set_link(ns, BRIDGE, mtu=mtu, up=True)


def build_node(kernel: Kernel, prefix: str, node: str, index: int, mtu: int = 1500) -> str:
    """Create the node's namespace with its underlay leg; return its underlay IP."""
    ns = node_ns(prefix, node)
    ul = underlay_ns(prefix)
    netns.create(ns)
    sysctl.write(ns, {"net/ipv6/conf/default/disable_ipv6": "1",
                      "net/ipv6/conf/all/disable_ipv6": "1"})
    kernel.set_link(ns, "lo", up=True)
    leg = f"ul{index}"
    if not any(link.name == "ul0" for link in kernel.links(ns)):
        kernel.create_veth(ul, leg, "ul0", ns, mtu=mtu)
    kernel.set_master(ul, leg, BRIDGE)
    kernel.set_link(ul, leg, mtu=mtu, up=True)
    kernel.set_link(ns, "ul0", mtu=mtu, up=True)
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
