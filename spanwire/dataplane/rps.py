"""Receive packet steering (RPS) of a namespace's links: which CPUs do their receive work.

A veth hands what it transmits to the backlog of the CPU that sent it, so on
one machine the host at the far end does its receive work on the sender's
CPU; `rps_cpus` moves it to the CPUs of a mask. It is a sysfs file, and
/sys/class/net shows the devices of the namespace sysfs was mounted for, not
the calling thread's: from a setns()'d thread (as `sysctl` works) the same
path would reach the host's device of that name. So it is written under
`ip netns exec`, which mounts a sysfs of the namespace, and only after the
device found there proved to be the one netlink reports in `ns` (same ifindex
and MAC); otherwise nothing is written.
"""

from __future__ import annotations

from spanwire.dataplane import process
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import NotFound, Unavailable

# $1 device, $2 "ifindex mac" netlink reports for it, $3 (optional) the mask to write.
# Prints the device's mask of every rx queue afterwards.
_SCRIPT = r"""
d=/sys/class/net/$1
seen="$(cat "$d/ifindex" 2>/dev/null) $(cat "$d/address" 2>/dev/null)"
if [ "$seen" != "$2" ]; then
    echo "sysfs shows another $1 here ($seen, netlink: $2)" >&2
    exit 3
fi
for q in "$d"/queues/rx-*; do
    if [ $# -ge 3 ]; then echo "$3" > "$q/rps_cpus" || exit 4; fi
    cat "$q/rps_cpus"
done
"""


def _identity(kernel: Kernel, ns: str, dev: str) -> str:
    for link in kernel.links(ns):
        if link.name == dev:
            return f"{link.index} {link.mac}"
    raise NotFound(f"no link {dev} in namespace {ns}")


def _run(kernel: Kernel, ns: str, dev: str, *mask: str) -> list[int]:
    argv = ["sh", "-c", _SCRIPT, "rps", dev, _identity(kernel, ns, dev), *mask]
    out = process.run(ns, argv).stdout.split()
    if not out:
        raise Unavailable(f"{dev} in {ns} has no rx queue to steer")
    return [int(m.replace(",", ""), 16) for m in out]


def set_mask(kernel: Kernel, ns: str, dev: str, mask: int) -> None:
    """Steer what `dev` in `ns` receives to the CPUs of `mask` (0: no steering) on every
    rx queue."""
    if any(m != mask for m in _run(kernel, ns, dev, f"{mask:x}")):
        raise Unavailable(f"rps_cpus of {dev} in {ns} did not take mask {mask:x}")


def masks(kernel: Kernel, ns: str, dev: str) -> list[int]:
    """The RPS mask of each rx queue of `dev` in `ns`."""
    return _run(kernel, ns, dev)
