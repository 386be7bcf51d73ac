"""A "VM": a namespace whose eth0 is the far end of a Neutron port's tap.

Like a hypervisor, we create the tap (veth) in the node namespace, named
after the port ("tap" + port id[:11]), with the port's MAC on the VM side;
the agent plugs it into the routing namespace. The VM then configures
itself with a real DHCP client (busybox udhcpc and a small script below).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from spanwire.agent import naming
from spanwire.dataplane import netns, process, sysctl
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import Unavailable

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc hook: apply what the DHCP server told us, and record it.
case "$1" in
  deconfig)
    ip addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    elif [ -n "$router" ]; then
      for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    fi
    printf 'ip=%s\\nmask=%s\\nmtu=%s\\nrouter=%s\\ndns=%s\\nstaticroutes=%s\\n' \\
      "$ip" "$mask" "$mtu" "$router" "$dns" "$staticroutes" > "$LEASE_FILE"
    ;;
esac
exit 0
"""


@dataclass(frozen=True)
class Lease:
    ip: str
    mask: str
    mtu: int
    router: str
    dns: str
    staticroutes: str


def vm_ns(prefix: str, name: str) -> str:
    return f"{prefix}-vm-{name}"


def create(kernel: Kernel, prefix: str, name: str, node_ns: str, port_id: str, mac: str) -> str:
    """The VM namespace with eth0 (port MAC); its tap waits in the node namespace."""
    ns = vm_ns(prefix, name)
    netns.create(ns)
    sysctl.write(ns, {"net/ipv6/conf/default/disable_ipv6": "1",
                      "net/ipv6/conf/all/disable_ipv6": "1"})
    kernel.set_link(ns, "lo", up=True)
    kernel.create_veth(node_ns, naming.tap(port_id), "eth0", ns, peer_mac=mac)
    kernel.set_link(ns, "eth0", up=True)
    return ns


def delete(kernel: Kernel, prefix: str, name: str) -> None:
    ns = vm_ns(prefix, name)
    if not netns.exists(ns):
        return
    process.kill_all_in([ns])
    for link in kernel.links(ns):
        if link.name != "lo":
            kernel.delete_link(ns, link.name)
    kernel.forget(ns)
    netns.remove(ns)


def dhcp(prefix: str, name: str, state_dir: str, timeout: int = 15) -> Lease:
    """Run udhcpc once in the VM; return the lease it applied."""
    ns = vm_ns(prefix, name)
    os.makedirs(state_dir, exist_ok=True)
    script = os.path.join(state_dir, "udhcpc.sh")
    if not os.path.exists(script):
        with open(script, "w") as handle:
            handle.write(UDHCPC_SCRIPT)
        os.chmod(script, 0o755)
    lease_file = os.path.join(state_dir, f"lease-{name}")
    if os.path.exists(lease_file):
        os.unlink(lease_file)
    argv = ["env", f"LEASE_FILE={lease_file}", "/usr/sbin/udhcpc", "-i", "eth0", "-s", script,
            "-q", "-n", "-f", "-t", str(timeout), "-T", "1", "-O", "mtu", "-O", "staticroutes"]
    proc = process.run(ns, argv, timeout=timeout + 5, check=False)
    if proc.returncode != 0 or not os.path.exists(lease_file):
        raise Unavailable(f"vm {name}: no DHCP lease ({proc.stderr.strip()[-300:]})")
    values = {}
    with open(lease_file) as handle:
        for line in handle:
            key, _, value = line.strip().partition("=")
            values[key] = value
    return Lease(ip=values["ip"], mask=values["mask"], mtu=int(values.get("mtu") or 0),
                 router=values.get("router", ""), dns=values.get("dns", ""),
                 staticroutes=values.get("staticroutes", ""))


def exec_(prefix: str, name: str, argv: Sequence[str], timeout: float = 60.0
          ) -> subprocess.CompletedProcess[str]:
    return process.run(vm_ns(prefix, name), argv, timeout=timeout, check=False)
