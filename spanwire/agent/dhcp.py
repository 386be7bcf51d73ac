"""The dnsmasq configuration of one node-network, rendered purely from the model.

dnsmasq answers only for the ports on this node (static leases, no dynamic
range), with the subnet's gateway, MTU, DNS servers and host routes. It runs
with `--conf-file=/dev/null --port=0`: no DNS, no system config. Leases and
options live in files that dnsmasq re-reads on SIGHUP, so adding a port never
restarts it; only a change of the subnets (the argv) does.
"""

from __future__ import annotations

import ipaddress
import operator
import os

from spanwire.agent import memo
from spanwire.agent.state import Dhcp
from spanwire.model import Port, Subnet

LEASE_TIME = "12h"
DNSMASQ = "/usr/sbin/dnsmasq"


def _tag(subnet: Subnet) -> str:
    return "s" + subnet.id.replace("-", "")[:12]


def _options(subnet: Subnet, mtu: int) -> list[str]:
    tag = _tag(subnet)
    lines = [f"tag:{tag},option:mtu,{mtu}"]
    if subnet.gateway_ip:
        lines.append(f"tag:{tag},option:router,{subnet.gateway_ip}")
    if subnet.dns_nameservers:
        lines.append(f"tag:{tag},option:dns-server,{','.join(subnet.dns_nameservers)}")
    if subnet.host_routes:
        # RFC 3442: a client that gets option 121 ignores option 3, so the
        # default route has to be repeated in it.
        parts = [f"{r.destination},{r.nexthop}" for r in subnet.host_routes]
        if subnet.gateway_ip:
            parts.append(f"0.0.0.0/0,{subnet.gateway_ip}")
        lines.append(f"tag:{tag},option:classless-static-route,{','.join(parts)}")
    return lines


_HOST_LINES: memo.IdentityMemo[str] = memo.IdentityMemo()


def _host_line(port: Port, subnets: frozenset[str]) -> str:
    """The port's static lease: its MAC and its first address on a DHCP subnet (one per MAC)."""
    for fixed in port.fixed_ips:
        if fixed.subnet_id in subnets:
            return f"{port.mac_address},{fixed.ip_address}\n"
    return ""


def render(
    run_dir: str, ns: str, subnets: list[Subnet], local_ports: list[Port], mtu: int
) -> Dhcp | None:
    """The dnsmasq for routing namespace `ns`, or None if no subnet wants DHCP."""
    enabled = sorted((s for s in subnets if s.enable_dhcp), key=lambda s: s.id)
    if not enabled:
        return None
    base = os.path.join(run_dir, ns)
    hosts_path = os.path.join(base, "hosts")
    opts_path = os.path.join(base, "opts")
    argv = [
        DNSMASQ,
        "--conf-file=/dev/null",
        "--port=0",
        "--no-resolv",
        "--no-hosts",
        "--leasefile-ro",
        "--dhcp-authoritative",
        # Broadcast replies: a unicast reply would make dnsmasq overwrite our
        # permanent neighbour entry for the VM with a learned one.
        "--dhcp-broadcast",
        "--interface=tap*",
        "--except-interface=lo",
        f"--pid-file={os.path.join(base, 'dnsmasq.pid')}",
        f"--dhcp-hostsfile={hosts_path}",
        f"--dhcp-optsfile={opts_path}",
    ]
    by_id = {s.id: s for s in enabled}
    for subnet in enabled:
        net = ipaddress.IPv4Network(subnet.cidr)
        argv.append(
            f"--dhcp-range=set:{_tag(subnet)},{net.network_address},static,"
            f"{net.netmask},{LEASE_TIME}"
        )
    enabled_ids = frozenset(by_id)
    get = _HOST_LINES.get
    hosts = [get(port.id, port, enabled_ids, _host_line, port, enabled_ids)
             for port in sorted(local_ports, key=operator.attrgetter("id"))]
    opts = [line for s in enabled for line in _options(s, mtu)]
    files = (
        (hosts_path, "".join(hosts)),
        (opts_path, "".join(o + "\n" for o in opts)),
    )
    return Dhcp(argv=tuple(argv), files=files)
