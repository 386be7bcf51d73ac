"""Versions of the system components a snapshot depends on, read from the tools."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess

# tool -> (argv, regex whose first group is the version)
_TOOLS: dict[str, tuple[list[str], str]] = {
    "iproute2": (["ip", "-V"], r"(iproute2-[\w.]+|\d[\w.]*)"),
    "nftables": (["nft", "--version"], r"v?(\d[\w.]*)"),
    "etcd": (["etcd", "--version"], r"etcd Version:\s*(\S+)"),
    "dnsmasq": (["dnsmasq", "--version"], r"version\s+(\S+)"),
    "iperf3": (["iperf3", "--version"], r"iperf\s+(\S+)"),
    "udhcpc": (["busybox"], r"BusyBox\s+v(\S+)"),
}


def _version_of(argv: list[str], pattern: str) -> str:
    path = shutil.which(argv[0]) or shutil.which(argv[0], path="/usr/sbin:/sbin")
    if path is None:
        return "absent"
    try:
        proc = subprocess.run(
            [path, *argv[1:]], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(pattern, proc.stdout + proc.stderr)
    return match.group(1) if match else "unknown"


def probe_tool_versions() -> dict[str, str]:
    """{component: version} for the kernel, Python and every external tool."""
    versions = {"kernel": platform.release(), "python": platform.python_version()}
    for name, (argv, pattern) in _TOOLS.items():
        versions[name] = _version_of(argv, pattern)
    return versions
