"""The qualification topology and the connectivity it must (and must not) have.

Pure: from a list of node names it derives a realistic multi-project layout
(two projects with the same CIDR, VMs on every node, one VM in each project
holding the *same* address) and the expected result of every probe. The
runner only executes probes and compares; what "correct" means lives here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from itertools import permutations

SAME_NODE = "same-node"
CROSS_NODE = "cross-node"
CROSS_PROJECT = "cross-project"
CROSS_SUBNET = "cross-subnet"
SG_ALLOWED = "sg-allowed"
SG_DENIED = "sg-denied"
FLOATING_IP = "floating-ip"
SNAT = "snat"
UNDERLAY = "underlay"

PATH_CLASSES = (SAME_NODE, CROSS_NODE, CROSS_SUBNET, CROSS_PROJECT, SG_ALLOWED, SG_DENIED,
                FLOATING_IP, SNAT)
DEFAULT_GROUP = "default"
WEB_GROUP = "web"  # ingress tcp TCP_PORT from anywhere, nothing else
PUBLIC_GROUP = "public"  # ingress icmp and any tcp from anywhere (VMs with a floating IP)
SUITES = ("connectivity", "bandwidth", "failover")
TCP_PORT = 7007  # the VMs' whoami service
PEER_PORT = 7008  # the outside host's service answering with the caller's address
OUTSIDE = "outside"  # the host beyond the provider network, as a probe source/target


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
    # Has a floating IP; in the default group it is also in PUBLIC_GROUP, so the
    # outside can use it ("w1" keeps only its web group: the outside may not ping it).
    floating: bool = False

    def admits(self, src: VMSpec | None, proto: str) -> bool:
        """Neutron semantics of this VM's security groups for ingress from `src`
        (None: the outside host, in no group and no project)."""
        if self.floating and self.group == DEFAULT_GROUP and proto in ("icmp", "tcp"):
            return True
        if self.group == WEB_GROUP:
            return proto == "tcp"
        return src is not None and src.group == DEFAULT_GROUP and src.project == self.project


@dataclass(frozen=True)
class RouterSpec:
    name: str
    project: str
    networks: tuple[str, ...]
    gateway: bool = False  # its external gateway on the provider network (SNAT on)


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

    def uplink(self, vm: VMSpec) -> RouterSpec | None:
        """The router that takes `vm`'s traffic to the outside (first by name), if any."""
        return next((r for r in sorted(self.routers, key=lambda r: r.name)
                     if r.gateway and vm.network in r.networks), None)


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
    port: int = TCP_PORT

    @property
    def label(self) -> str:
        return f"{self.src} → {self.dst_ip} {self.proto}"


def default_topology(nodes: list[str], cidr: str = "10.10.0.0/24") -> Topology:
    """Two projects with one overlapping CIDR; alpha has 2 VMs per node, beta 1.

    Both projects' routers have their gateway on the provider network, so every
    VM reaches the outside through SNAT on its own node; alpha's first VM on
    every node, beta's first VM (same fixed address as alpha's first, on the
    same node) and "w1" have floating IPs.

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
            vms.append(VMSpec(f"a{n + 1}", "alpha", "alpha-net", node, str(hosts[10 + n]),
                              floating=n == 2 * i))
        ip = hosts[10] if i == 0 else hosts[100 + i]
        vms.append(VMSpec(f"b{i + 1}", "beta", "beta-net", node, str(ip), floating=i == 0))
    vms.append(VMSpec("w1", "alpha", "alpha-net", nodes[-1], str(hosts[60]), WEB_GROUP,
                      floating=True))
    vms.append(VMSpec("c1", "alpha", "alpha-net2", nodes[-1], "10.20.0.10"))
    routers = (RouterSpec("alpha-router", "alpha", ("alpha-net", "alpha-net2"), gateway=True),
               RouterSpec("beta-router", "beta", ("beta-net",), gateway=True))
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


def floating_placeholder(vm: str) -> str:
    """Stands for `vm`'s floating IP in a probe until the runner knows the address."""
    return f"fip:{vm}"


def snat_placeholder(router: str, node: str) -> str:
    """Stands for `router`'s own external address on `node` (claimed by that node's agent)."""
    return f"snat:{router}@{node}"


def north_south_matrix(topo: Topology) -> list[Probe]:
    """The outside → every floating IP (answered by its own VM, or refused by its groups),
    and every VM behind a router with a gateway → the outside (seen with its floating IP,
    or with its own node's SNAT address of that router).

    Addresses allocated at run time are placeholders (`floating_placeholder`,
    `snat_placeholder`) that the runner resolves with `resolve`.
    """
    probes: list[Probe] = []
    for vm in topo.vms:
        if vm.floating and topo.uplink(vm) is not None:
            for proto in ("icmp", "tcp"):
                expect = vm.admits(None, proto)
                probes.append(Probe(FLOATING_IP, OUTSIDE, floating_placeholder(vm.name), proto,
                                    expect, vm.name if expect else None))
    for vm in topo.vms:
        router = topo.uplink(vm)
        if router is None:
            continue
        seen = floating_placeholder(vm.name) if vm.floating else \
            snat_placeholder(router.name, vm.node)
        probes.append(Probe(SNAT, vm.name, OUTSIDE, "tcp", True, seen, PEER_PORT))
    return probes


def resolve(probes: list[Probe], addresses: dict[str, str], outside_ip: str) -> list[Probe]:
    """Probes with placeholders replaced by real addresses (KeyError names a missing one)."""
    def real(value: str) -> str:
        if value == OUTSIDE:
            return outside_ip
        return addresses[value] if value.startswith(("fip:", "snat:")) else value

    return [replace(p, dst_ip=real(p.dst_ip),
                    responder=real(p.responder) if p.responder else p.responder)
            for p in probes]


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
