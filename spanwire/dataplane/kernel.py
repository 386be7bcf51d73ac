"""Netlink access to named namespaces, through pyroute2, with verified sockets.

`Kernel` caches one IPRoute per namespace (opening one forks a helper) and
checks, via SIOCGSKNS, that each socket really lives in the namespace it was
opened for and never in the host's. It speaks in plain values (names,
strings), not pyroute2 messages, so the rest of the code never sees pyroute2.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spanwire.dataplane import netns
from spanwire.errors import NotFound, Unavailable

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger("spanwire.dataplane")

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
RTPROT_KERNEL = 2
RTPROT_STATIC = 4
RTN_UNICAST = 1
IFF_UP = 0x1
IFA_F_NOPREFIXROUTE = 0x200
MAIN_TABLE = 254


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    mtu: int
    mac: str
    up: bool
    vxlan: dict[str, Any] | None = None


@dataclass(frozen=True)
class Snapshot:
    """Everything netlink tells about one namespace, in plain values."""

    links: list[Link]
    addrs: list[tuple[str, str]]  # (dev, "ip/plen")
    routes: list[tuple[str, str, str | None]]  # (dst/plen, dev, gateway)
    neighs: list[tuple[str, str, str]]  # permanent only: (dev, ip, mac)
    fdbs: list[tuple[str, str, str]]  # (dev, mac, dst)
    link_sysctls: dict[str, str] = field(default_factory=dict)  # per-device sysctl key → value


class Kernel:
    """One per agent. Thread-safe enough for one reconcile loop at a time."""

    def __init__(self) -> None:
        self._sockets: dict[str, IPRoute] = {}
        self._lock = threading.Lock()
        self.writes = 0  # kernel writes made through this object (tests, bench)
        self._indexes: dict[tuple[str, str], int] = {}

    def ipr(self, ns: str) -> IPRoute:
        with self._lock:
            sock = self._sockets.get(ns)
            if sock is None:
                if not netns.exists(ns):
                    raise NotFound(f"namespace {ns} does not exist")
                from pyroute2 import IPRoute  # see `_do`

                sock = IPRoute(netns=ns)
                mine = netns.socket_inode(sock.fileno())
                if mine != netns.inode(ns) or mine == netns.host_inode():
                    sock.close()
                    raise netns.WrongNamespace(f"netlink socket for {ns} is not in {ns}")
                self._sockets[ns] = sock
            return sock

    def forget(self, ns: str) -> None:
        """Close our socket into `ns` (it would keep a deleted namespace alive)."""
        with self._lock:
            sock = self._sockets.pop(ns, None)
            self._indexes = {k: v for k, v in self._indexes.items() if k[0] != ns}
        if sock is not None:
            sock.close()

    def close(self) -> None:
        for ns in list(self._sockets):
            self.forget(ns)

    # -- reading -----------------------------------------------------------

    def links(self, ns: str) -> list[Link]:
        out = []
        for msg in self.ipr(ns).get_links():
            info = msg.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info else ""
            vx = None
            if kind == "vxlan":
                data = info.get_attr("IFLA_INFO_DATA")
                vx = {k: v for k, v in data["attrs"]} if data else {}
            out.append(
                Link(
                    index=msg["index"],
                    name=msg.get_attr("IFLA_IFNAME"),
                    kind=kind or "",
                    mtu=msg.get_attr("IFLA_MTU"),
                    mac=msg.get_attr("IFLA_ADDRESS") or "",
                    up=bool(msg["flags"] & IFF_UP),
                    vxlan=vx,
                )
            )
        return out

    def snapshot(self, ns: str) -> Snapshot:
        ipr = self.ipr(ns)
        links = self.links(ns)
        names = {link.index: link.name for link in links}
        addrs = [
            (names.get(m["index"], "?"), f"{m.get_attr('IFA_ADDRESS')}/{m['prefixlen']}")
            for m in ipr.get_addr(family=socket.AF_INET)
        ]
        routes = []
        for m in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE):
            if m["proto"] == RTPROT_KERNEL or m["type"] != RTN_UNICAST:
                continue
            dst = m.get_attr("RTA_DST") or "0.0.0.0"
            routes.append(
                (f"{dst}/{m['dst_len']}", names.get(m.get_attr("RTA_OIF"), "?"),
                 m.get_attr("RTA_GATEWAY"))
            )
        neighs = [
            (names.get(m["ifindex"], "?"), m.get_attr("NDA_DST"), m.get_attr("NDA_LLADDR"))
            for m in ipr.get_neighbours(family=socket.AF_INET)
            if m["state"] & NUD_PERMANENT and m.get_attr("NDA_LLADDR")
        ]
        fdbs = [
            (names.get(m["ifindex"], "?"), m.get_attr("NDA_LLADDR"), m.get_attr("NDA_DST"))
            for m in ipr.get_neighbours(family=socket.AF_BRIDGE)
            if m.get_attr("NDA_DST")
        ]
        return Snapshot(links=links, addrs=addrs, routes=routes, neighs=neighs, fdbs=fdbs)

    # -- writing -----------------------------------------------------------

    def _index(self, ns: str, name: str) -> int:
        """ifindex of `name` in `ns`, cached.

        pyroute2's link_lookup dumps and decodes every link (slow with many
        ports); if_nametoindex from a thread inside the namespace is one ioctl.
        """
        key = (ns, name)
        index = self._indexes.get(key)
        if index is None:
            try:
                index = netns.run_in(ns, lambda: socket.if_nametoindex(name))
            except OSError as exc:
                raise NotFound(f"link {name} not found in {ns}") from exc
            self._indexes[key] = index
        return index

    def _forget_index(self, ns: str, name: str) -> None:
        self._indexes.pop((ns, name), None)

    def forget_index(self, ns: str, name: str) -> None:
        """Drop a cached ifindex: the link was moved or replaced by another `Kernel`."""
        self._forget_index(ns, name)

    def _do(self, what: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        # pyroute2 is imported on the first write, not at start: importing it costs
        # about a quarter of a second, and a warm restart that finds nothing to
        # change never writes (reads go through iproute2, `dataplane.reader`).
        from pyroute2.netlink.exceptions import NetlinkError

        self.writes += 1
        try:
            return func(*args, **kwargs)
        except NetlinkError as exc:
            self._indexes.clear()  # a link may have gone or been replaced behind our back
            raise Unavailable(f"{what}: netlink error {exc.code} ({exc})") from exc

    def create_vxlan(
        self, node_ns: str, ns: str, name: str, vni: int, local: str, port: int, mtu: int, mac: str
    ) -> None:
        """Create in `node_ns` and move to `ns` in one message: the socket stays in node_ns."""
        self._do(
            f"create vxlan {name} in {ns}",
            self.ipr(node_ns).link,
            "add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_local=local,
            vxlan_learning=0, vxlan_port=port, address=mac, mtu=mtu, net_ns_fd=ns,
        )

    def create_macvlan(self, node_ns: str, parent: str, ns: str, name: str, mac: str,
                       mtu: int) -> None:
        """A bridge-mode macvlan of `parent` (in `node_ns`), created straight into `ns`."""
        self._forget_index(ns, name)
        self._do(
            f"create macvlan {name} on {parent} in {ns}",
            self.ipr(node_ns).link,
            "add", ifname=name, kind="macvlan", link=self._index(node_ns, parent),
            macvlan_mode="bridge", address=mac, mtu=mtu, net_ns_fd=ns,
        )

    def create_veth(self, ns: str, name: str, peer: str, peer_ns: str, mtu: int | None = None,
                    peer_mac: str | None = None) -> None:
        """A veth pair with `name` in `ns` and `peer` in `peer_ns` (VMs, underlay, router legs)."""
        # Names may be reused by a new pair: any cached index of them is stale.
        self._forget_index(ns, name)
        self._forget_index(peer_ns, peer)
        peer_spec: dict[str, Any] = {"ifname": peer, "net_ns_fd": peer_ns}
        if peer_mac:
            peer_spec["address"] = peer_mac
        kwargs: dict[str, Any] = {"mtu": mtu} if mtu else {}
        self._do(f"create veth {name} in {ns}", self.ipr(ns).link, "add", ifname=name,
                 kind="veth", peer=peer_spec, **kwargs)

    def create_bridge(self, ns: str, name: str) -> None:
        self._do(f"create bridge {name} in {ns}", self.ipr(ns).link, "add", ifname=name,
                 kind="bridge")

    def set_master(self, ns: str, name: str, master: str) -> None:
        self._do(f"enslave {name}", self.ipr(ns).link, "set", index=self._index(ns, name),
                 master=self._index(ns, master))

    def move_link(self, src_ns: str, name: str, dst_ns: str) -> None:
        index = self._index(src_ns, name)
        self._forget_index(src_ns, name)
        self._do(f"move {name} {src_ns}->{dst_ns}", self.ipr(src_ns).link, "set",
                 index=index, net_ns_fd=dst_ns)

    def set_link(self, ns: str, name: str, mtu: int | None = None, mac: str | None = None,
                 up: bool = True) -> None:
        kwargs: dict[str, Any] = {"state": "up" if up else "down"}
        if mtu is not None:
            kwargs["mtu"] = mtu
        if mac is not None:
            kwargs["address"] = mac
        self._do(f"set {name} in {ns}", self.ipr(ns).link, "set",
                 index=self._index(ns, name), **kwargs)

    def delete_link(self, ns: str, name: str) -> None:
        try:
            index = self._index(ns, name)
        except NotFound:
            return
        self._forget_index(ns, name)
        self._do(f"delete {name} in {ns}", self.ipr(ns).link, "del", index=index)

    def addr(self, ns: str, command: str, dev: str, cidr: str, noprefixroute: bool = True) -> None:
        ip, plen = cidr.split("/")
        kwargs: dict[str, Any] = {}
        if noprefixroute and command == "add":
            kwargs["IFA_FLAGS"] = IFA_F_NOPREFIXROUTE
        self._do(f"addr {command} {cidr} {dev} in {ns}", self.ipr(ns).addr, command,
                 index=self._index(ns, dev), address=ip, prefixlen=int(plen), **kwargs)

    def neigh(self, ns: str, command: str, dev: str, ip: str, mac: str) -> None:
        self._do(f"neigh {command} {ip} {dev} in {ns}", self.ipr(ns).neigh, command,
                 ifindex=self._index(ns, dev), dst=ip, lladdr=mac, state=NUD_PERMANENT)

    def fdb(self, ns: str, command: str, dev: str, mac: str, dst: str) -> None:
        self._do(f"fdb {command} {mac} {dev} in {ns}", self.ipr(ns).fdb, command,
                 ifindex=self._index(ns, dev), lladdr=mac, dst=dst, state=NUD_PERMANENT,
                 flags=NTF_SELF)

    def route(self, ns: str, command: str, dst: str, dev: str, via: str | None = None) -> None:
        kwargs: dict[str, Any] = {"dst": dst, "oif": self._index(ns, dev), "proto": RTPROT_STATIC}
        if via:
            kwargs.update(gateway=via, flags=RTNH_F_ONLINK)
        elif command != "del":
            kwargs["scope"] = 253  # link
        self._do(f"route {command} {dst} {dev} in {ns}", self.ipr(ns).route, command, **kwargs)
