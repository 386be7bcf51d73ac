"""Probe what this kernel can do, in a throwaway namespace, at agent start.

The design depends only on netns, veth, VXLAN, proxy ARP and nftables;
macvlan is needed for north-south (routers' provider legs) only; the rest is
reported so an operator sees at a glance what the node lacks. Two of those
bound the overlay's throughput on a CPU-bound node (bench/results/dataplane.md):
`nft_flowtable` (nf_flow_table: established flows past the forward path) and
`big_tcp_vxlan` (GSO packets over 64 KB through a VXLAN device, which needs a
kernel with BIG TCP for UDP tunnels); spanwire uses neither yet, and says
whether a kernel could.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess

from spanwire.dataplane import netns
from spanwire.dataplane.kernel import Kernel
from spanwire.errors import SpanwireError, Unavailable

log = logging.getLogger("spanwire.dataplane.capabilities")

REQUIRED = ("netns", "veth", "vxlan", "nftables_inet")
LINK_KINDS = {
    "veth": {"kind": "veth", "peer": {"ifname": "p1"}},
    "bridge": {"kind": "bridge"},
    "vxlan": {"kind": "vxlan", "vxlan_id": 42, "vxlan_port": 4789, "vxlan_learning": 0},
    "vrf": {"kind": "vrf", "vrf_table": 100},
    "dummy": {"kind": "dummy"},
    "geneve": {"kind": "geneve", "geneve_id": 42, "geneve_remote": "192.0.2.1"},
    "wireguard": {"kind": "wireguard"},
    "bond": {"kind": "bond"},
}
NFT_PROBE = """table inet swprobe {
  chain pfwd { type filter hook forward priority 0; ct state established accept; }
  chain pnat { type nat hook postrouting priority 100; masquerade; }
}
"""
FLOWTABLE_PROBE = """table inet swprobeft {
  flowtable ft { hook ingress priority 0; devices = { %s }; }
}
"""
LEGACY_GSO_MAX = 65536


class MissingCapability(Unavailable):
    """The kernel cannot run the data plane; retrying will not help."""


def probe(scratch_ns: str) -> dict[str, bool]:
    """Try each feature in namespace `scratch_ns` (created and removed here)."""
    caps: dict[str, bool] = {}
    kernel = Kernel()
    try:
        netns.create(scratch_ns)
        caps["netns"] = True
    except OSError:
        return {"netns": False}
    try:
        ipr = kernel.ipr(scratch_ns)
        for name, spec in LINK_KINDS.items():
            try:
                ipr.link("add", ifname=_probe_link(name), **spec)
                caps[name] = True
            except Exception:  # noqa: BLE001 - any failure means "not available"
                caps[name] = False
        caps["macvlan"] = _macvlan(ipr, caps)
        caps["nftables_inet"] = _nft(scratch_ns, NFT_PROBE)
        caps["nft_flowtable"] = caps["veth"] and _nft(
            scratch_ns, FLOWTABLE_PROBE % _probe_link("veth"))
        caps["big_tcp_vxlan"] = caps["vxlan"] and \
            _tso_max(ipr, _probe_link("vxlan")) > LEGACY_GSO_MAX
    finally:
        kernel.close()
        with contextlib.suppress(SpanwireError, OSError):
            netns.remove(scratch_ns)
    return caps


def _probe_link(kind: str) -> str:
    """The name of the probe's link of `kind` (one of LINK_KINDS)."""
    return f"probe{list(LINK_KINDS).index(kind)}"


def _macvlan(ipr: object, caps: dict[str, bool]) -> bool:
    """Routers' provider legs (north-south) are macvlans of the node's provider interface."""
    if not caps.get("veth"):
        return False
    try:
        parent = ipr.link_lookup(ifname=_probe_link("veth"))[0]  # type: ignore[attr-defined]
        ipr.link("add", ifname="probemv", kind="macvlan", link=parent,  # type: ignore[attr-defined]
                 macvlan_mode="bridge")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def _nft(ns: str, document: str) -> bool:
    nft = shutil.which("nft")
    if nft is None:
        return False
    proc = subprocess.run(["ip", "netns", "exec", ns, nft, "-f", "-"], input=document,
                          capture_output=True, text=True, timeout=10)
    return proc.returncode == 0


def _tso_max(ipr: object, name: str) -> int:
    """The largest GSO packet `name` takes (IFLA_TSO_MAX_SIZE; 0 if the kernel does not say).

    A VXLAN device with no lower device reports more than 64 KB only on
    kernels that carry BIG TCP through UDP tunnels (older ones would write a
    wrong UDP length into such packets).
    """
    try:
        link = ipr.link("get", ifname=name)[0]  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return 0
    return int(link.get("IFLA_TSO_MAX_SIZE") or 0)


def boot_id() -> str:
    with open("/proc/sys/kernel/random/boot_id") as handle:
        return handle.read().strip()


def cached_probe(scratch_ns: str, cache_file: str) -> dict[str, bool]:
    """Probe once per boot: a warm agent restart must not touch the kernel at all."""
    boot = boot_id()
    try:
        with open(cache_file) as handle:
            saved = json.load(handle)
        if saved.get("boot_id") == boot:
            return {k: bool(v) for k, v in saved["capabilities"].items()}
    except (OSError, ValueError, KeyError):
        pass
    caps = probe(scratch_ns)
    tmp = cache_file + ".tmp"
    with open(tmp, "w") as handle:
        json.dump({"boot_id": boot, "capabilities": caps}, handle)
    os.replace(tmp, cache_file)
    return caps


def require(caps: dict[str, bool]) -> None:
    missing = [name for name in REQUIRED if not caps.get(name)]
    absent = sorted(name for name, ok in caps.items() if not ok)
    if absent:
        log.warning("event=capabilities missing=%s (not needed by the routed data plane "
                    "unless listed as required)", ",".join(absent))
    if missing:
        raise MissingCapability(f"kernel lacks {', '.join(missing)}, which spanwire's data plane "
                          "needs; load the modules or use a newer kernel")
