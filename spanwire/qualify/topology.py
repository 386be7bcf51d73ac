"""The qualification topology and the connectivity it must (and must not) have.

Pure: from a list of node names it derives a realistic multi-project layout
(two projects with the same CIDR, VMs on every node, one VM in each project
holding the *same* address) and the expected result of every probe. The
runner only executes probes and compares; what "correct" means lives here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from itertools import permutations

SAME_NODE = "same-node"
CROSS_NODE = "cross-node"
CROSS_PROJECT = "cross-project"
CROSS_SUBNET = "cross-subnet"
SG_ALLOWED = "sg-allowed"
SG_DENIED = "sg-denied"
UNDERLAY = "underlay"

PATH_CLASSES = (SAME_NODE, CROSS_NODE, CROSS_SUBNET, CROSS_PROJECT, SG_ALLOWED, SG_DENIED)
DEFAULT_GROUP = "default"
WEB_GROUP = "web"  # ingress tcp TCP_PORT from anywhere, nothing else
SUITES = ("connectivity", "bandwidth", "failover")
TCP_PORT = 7007  # the VMs' whoami service


@dataclass(frozen=True)
class NetSpec:
    name: str
    project: str
    cidr: str


@dataclass(frozen=True)
class VMSpec:
    name: str
    project: str
    network: str
    node: str
    ip: str
    group: str = DEFAULT_GROUP

    def admits(self, src: VMSpec, proto: str) -> bool:
        """Neutron semantics of this VM's one security group for ingress from `src`."""
        if self.group == WEB_GROUP:
            return proto == "tcp"
        return src.group == DEFAULT_GROUP and src.project == self.project


@dataclass(frozen=True)
class RouterSpec:
    name: str
    project: str
    networks: tuple[str, ...]


@dataclass(frozen=True)
class Topology:
    projects: tuple[str, ...]
    networks: tuple[NetSpec, ...]
    vms: tuple[VMSpec, ...]
    routers: tuple[RouterSpec, ...] = ()

    def routed(self, a: str, b: str) -> bool:
        """Networks `a` and `b` are joined by one of the topology's routers."""
        return any(a in r.networks and b in r.networks for r in self.routers)

    def vm(self, name: str) -> VMSpec:
        return next(v for v in self.vms if v.name == name)


@dataclass(frozen=True)
class Probe:
    """One check: can `src` reach `dst_ip` with `proto`, and who answers?

    `responder` is the VM that must answer when `expect` is True; a reply from
    anyone else (an overlapping address in another project) is a failure.
    """

    path_class: str
    src: str
    dst_ip: str
    proto: str  # "icmp" or "tcp"
    expect: bool
    responder: str | None = None

    @property
    def label(self) -> str:
        return f"{self.src} → {self.dst_ip} {self.proto}"


def default_topology(nodes: list[str], cidr: str = "10.10.0.0/24") -> Topology:
    """Two projects with one overlapping CIDR; alpha has 2 VMs per node, beta 1.

    beta's first VM deliberately holds the same address as alpha's first, so a
    leak between projects would be visible as a reply from the wrong VM.
    alpha's last VM ("w1") is alone in the "web" group, which admits only TCP
    on the whoami port: the security-group classes probe it both ways. A
    second alpha network behind a router holds "c1" on the last node, so the
    routed class runs both on one node and across nodes.
    """
    if len(nodes) < 2:
        raise ValueError("qualification needs at least 2 nodes")
    hosts = list(ipaddress.IPv4Network(cidr).hosts())
    nets = (NetSpec("alpha-net", "alpha", cidr), NetSpec("beta-net", "beta", cidr),
            NetSpec("alpha-net2", "alpha", "10.20.0.0/24"))
    vms: list[VMSpec] = []
    for i, node in enumerate(nodes):
        for n in (2 * i, 2 * i + 1):
            vms.append(VMSpec(f"a{n + 1}", "alpha", "alpha-net", node, str(hosts[10 + n])))
        ip = hosts[10] if i == 0 else hosts[100 + i]
        vms.append(VMSpec(f"b{i + 1}", "beta", "beta-net", node, str(ip)))
    vms.append(VMSpec("w1", "alpha", "alpha-net", nodes[-1], str(hosts[60]), WEB_GROUP))
    vms.append(VMSpec("c1", "alpha", "alpha-net2", nodes[-1], "10.20.0.10"))
    routers = (RouterSpec("alpha-router", "alpha", ("alpha-net", "alpha-net2")),)
    return Topology(("alpha", "beta"), nets, tuple(vms), routers)


def connectivity_matrix(topo: Topology) -> list[Probe]:
    """Every ordered VM pair: ICMP and TCP inside a network, and isolation across projects."""
    probes: list[Probe] = []
    by_ip: dict[tuple[str, str], str] = {(v.network, v.ip): v.name for v in topo.vms}
    for src, dst in permutations(topo.vms, 2):
        if src.network == dst.network or topo.routed(src.network, dst.network):
            plain = src.group == dst.group == DEFAULT_GROUP
            for proto in ("icmp", "tcp"):
                expect = dst.admits(src, proto)
                if plain and src.network != dst.network:
                    cls = CROSS_SUBNET
                elif plain:
                    cls = SAME_NODE if src.node == dst.node else CROSS_NODE
                else:
                    cls = SG_ALLOWED if expect else SG_DENIED
                probes.append(Probe(cls, src.name, dst.ip, proto, expect,
                                    dst.name if expect else None))
        elif src.project != dst.project:
            owner = next((by_ip[(n.name, dst.ip)] for n in topo.networks
                          if (n.name == src.network or topo.routed(src.network, n.name))
                          and (n.name, dst.ip) in by_ip), None)
            if owner is not None:
                # The address exists where src can reach: that VM must answer, not dst.
                if owner != src.name and topo.vm(owner).admits(src, "tcp"):
                    probes.append(Probe(CROSS_PROJECT, src.name, dst.ip, "tcp", True, owner))
                continue
            probes.append(Probe(CROSS_PROJECT, src.name, dst.ip, "icmp", False))
            probes.append(Probe(CROSS_PROJECT, src.name, dst.ip, "tcp", False))
    return probes


def bandwidth_pairs(topo: Topology) -> dict[str, tuple[str, str]]:
    """One (client VM, server VM) pair per path class that carries tenant traffic."""
    pairs: dict[str, tuple[str, str]] = {}
    alpha = [v for v in topo.vms if v.project == "alpha" and v.group == DEFAULT_GROUP]
    for a, b in permutations(alpha, 2):
        if a.network != b.network:
            cls = CROSS_SUBNET if a.node != b.node else ""
        else:
            cls = SAME_NODE if a.node == b.node else CROSS_NODE
        if cls:
            pairs.setdefault(cls, (a.name, b.name))
    return pairs
