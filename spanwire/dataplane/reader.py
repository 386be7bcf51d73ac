"""Fast reads of a namespace's state through iproute2's JSON output.

pyroute2 decodes every attribute of every message in Python (about 6 ms per
link with full stats); a node with 1,000 ports would take seconds to read.
`ip -batch` dumps links, addresses, routes and neighbours in one process, in
C, in a few milliseconds. Writes still go through netlink (pyroute2).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import orjson

from spanwire.dataplane import netns
from spanwire.dataplane.kernel import Link, Snapshot
from spanwire.errors import NotFound, Unavailable

IP = "/usr/sbin/ip"
BRIDGE = "/usr/sbin/bridge"
BATCH = ("link show\naddr show\nroute show table main\nneigh show nud permanent\n"
         "netconf show\nntable show\n")
USER_HZ = 100  # the unit of the neigh/*/proxy_delay sysctl; netlink reports milliseconds


def _start(argv: list[str], stdin: str = "") -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if stdin and proc.stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
        proc.stdin = None  # communicate() must not touch it again
    return proc


def _finish(proc: subprocess.Popen[str]) -> str:
    """Collect a process started by `_start` (several run in parallel)."""
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise Unavailable(f"{' '.join(proc.args[:4])} timed out") from exc  # type: ignore[index]
    if proc.returncode != 0:
        raise Unavailable(f"{' '.join(proc.args[:5])} failed: {err.strip()[:300]}")  # type: ignore[index]
    return out


def _run(argv: list[str], stdin: str = "") -> str:
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"{' '.join(argv[:4])} timed out") from exc
    if proc.returncode != 0:
        raise Unavailable(f"{' '.join(argv[:5])} failed: {proc.stderr.strip()[:300]}")
    return proc.stdout


def _documents(text: str) -> list[Any]:
    """The JSON arrays `ip -batch` prints one after another, one a line.

    orjson per line (a thousand ports' links and addresses are megabytes of
    JSON); the standard decoder's raw_decode if a document ever spans lines.
    """
    try:
        return [orjson.loads(line) for line in text.splitlines() if line.strip()]
    except orjson.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while pos < len(text):
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        doc, pos = decoder.raw_decode(text, pos)
        out.append(doc)
    return out


def _link(item: dict[str, Any]) -> Link:
    info = item.get("linkinfo") or {}
    kind = info.get("info_kind", "")
    vx = None
    if kind == "vxlan":
        data = info.get("info_data") or {}
        vx = {"IFLA_VXLAN_ID": data.get("id", 0), "IFLA_VXLAN_LOCAL": data.get("local", ""),
              "IFLA_VXLAN_PORT": data.get("port", 0),
              "IFLA_VXLAN_LEARNING": int(bool(data.get("learning", True)))}
    return Link(index=item["ifindex"], name=item["ifname"], kind=kind, mtu=item["mtu"],
                mac=item.get("address", ""), up="UP" in item.get("flags", []), vxlan=vx)


def _check(ns: str) -> None:
    netns._check_name(ns)
    if not netns.exists(ns):
        raise NotFound(f"namespace {ns} does not exist")


class Pending:
    """Reads started in the background (`ip` and `bridge` run in C, in parallel with
    each other and with the caller's Python); `result()` collects and decodes."""

    def __init__(self, ns: str, decode: Any, procs: list[subprocess.Popen[str]]) -> None:
        self.ns, self._decode, self._procs = ns, decode, procs

    def result(self) -> Any:
        return self._decode(*[_finish(p) for p in self._procs])


def start_links(ns: str) -> Pending:
    _check(ns)
    return Pending(ns, lambda out: [_link(i) for i in orjson.loads(out)],
                   [_start([IP, "-d", "-j", "-n", ns, "link", "show"])])


def links(ns: str) -> list[Link]:
    result: list[Link] = start_links(ns).result()
    return result


def start_snapshot(ns: str) -> Pending:
    _check(ns)
    return Pending(ns, lambda batch, fdb: _snapshot(ns, batch, fdb), [
        _start([IP, "-4", "-d", "-j", "-n", ns, "-batch", "-"], BATCH),
        _start([BRIDGE, "-j", "-n", ns, "fdb", "show"])])


def snapshot(ns: str) -> Snapshot:
    result: Snapshot = start_snapshot(ns).result()
    return result


def _snapshot(ns: str, batch: str, fdb: str) -> Snapshot:
    docs = _documents(batch)
    if len(docs) != 6:
        raise Unavailable(f"unexpected ip -batch output in {ns} ({len(docs)} documents)")
    raw_links, raw_addrs, raw_routes, raw_neighs, raw_netconf, raw_ntable = docs
    addrs = [(i["ifname"], f"{a['local']}/{a['prefixlen']}")
             for i in raw_addrs for a in i.get("addr_info", []) if a.get("family") == "inet"]
    routes = []
    for r in raw_routes:
        if r.get("protocol") == "kernel" or r.get("type", "unicast") != "unicast":
            continue
        dst = r.get("dst", "")
        dst = "0.0.0.0/0" if dst == "default" else dst if "/" in dst else f"{dst}/32"
        routes.append((dst, r.get("dev", "?"), r.get("gateway")))
    neighs = [(n.get("dev", "?"), n["dst"], n["lladdr"]) for n in raw_neighs
              if "PERMANENT" in n.get("state", []) and n.get("lladdr")]
    fdbs = [(f.get("ifname", "?"), f["mac"], f["dst"])
            for f in orjson.loads(fdb or "[]")
            if f.get("dst")]
    return Snapshot(links=[_link(i) for i in raw_links], addrs=addrs, routes=routes,
                    neighs=neighs, fdbs=fdbs,
                    link_sysctls=link_sysctls(raw_netconf, raw_ntable))


def link_sysctls(netconf: list[dict[str, Any]], ntable: list[dict[str, Any]]) -> dict[str, str]:
    """Per-device `proxy_arp` and `proxy_delay`, as their sysctl keys and values, from
    the netconf and neighbour-table dumps.

    Two dumps in the batch the snapshot runs anyway, instead of two file reads
    per port under /proc/sys (tens of milliseconds with a thousand ports).
    IPv4's netconf `proxy_neigh` is the device's `proxy_arp`.
    """
    out: dict[str, str] = {}
    for item in netconf:
        dev = item.get("interface")
        if item.get("family") == "inet" and dev and "proxy_neigh" in item:
            out[f"net/ipv4/conf/{dev}/proxy_arp"] = "1" if item["proxy_neigh"] else "0"
    for item in ntable:
        dev = item.get("dev")
        if item.get("family") == "inet" and dev and "proxy_delay" in item:
            out[f"net/ipv4/neigh/{dev}/proxy_delay"] = str(int(item["proxy_delay"]) * USER_HZ
                                                           // 1000)
    return out
