"""Fast reads of a namespace's state through iproute2's JSON output.

pyroute2 decodes every attribute of every message in Python (about 6 ms per
link with full stats); a node with 1,000 ports would take seconds to read.
`ip -batch` dumps links, addresses, routes and neighbours in one process, in
C, in a few milliseconds. Writes still go through netlink (pyroute2).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
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


class _Proc:
    """A dump running in the background, its output going to an unlinked temporary
    file: the caller waits once and reads it whole, instead of waking for every
    few kilobytes `ip` writes into a pipe (thousands of wake-ups per namespace
    of a thousand ports)."""

    def __init__(self, argv: list[str], stdin: str = "") -> None:
        self.argv = argv
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=self.out, stderr=self.err)
        except BaseException:
            self.out.close()
            self.err.close()
            raise
        if stdin and self.proc.stdin is not None:
            self.proc.stdin.write(stdin.encode())
            self.proc.stdin.close()

    def finish(self) -> bytes:
        try:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired as exc:
                self.proc.kill()
                self.proc.wait()
                raise Unavailable(f"{' '.join(self.argv[:4])} timed out") from exc
            if self.proc.returncode != 0:
                self.err.seek(0)
                err = self.err.read().decode(errors="replace").strip()
                raise Unavailable(f"{' '.join(self.argv[:5])} failed: {err[:300]}")
            self.out.seek(0)
            return self.out.read()
        finally:
            self.out.close()
            self.err.close()

    def abandon(self) -> None:
        if self.proc.returncode is None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()


def _documents(raw: bytes | str) -> list[Any]:
    """The JSON arrays `ip -batch` prints one after another, one a line.

    orjson per line (a thousand ports' links and addresses are megabytes of
    JSON); the standard decoder's raw_decode if a document ever spans lines.
    """
    try:
        return [orjson.loads(line) for line in raw.splitlines() if line.strip()]
    except orjson.JSONDecodeError:
        pass
    text = raw if isinstance(raw, str) else raw.decode()
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

    def __init__(self, ns: str, decode: Any, procs: list[_Proc]) -> None:
        self.ns, self._decode, self._procs = ns, decode, procs

    def result(self) -> Any:
        return self._decode(*[p.finish() for p in self._procs])

    def abandon(self) -> None:
        """Stop and reap the processes if nobody collected them (no zombies, no files)."""
        for proc in self._procs:
            proc.abandon()


def start_links(ns: str) -> Pending:
    _check(ns)
    return Pending(ns, lambda out: [_link(i) for i in orjson.loads(out)],
                   [_Proc([IP, "-d", "-j", "-n", ns, "link", "show"])])


def links(ns: str) -> list[Link]:
    result: list[Link] = start_links(ns).result()
    return result


def start_snapshot(ns: str) -> Pending:
    _check(ns)
    return Pending(ns, lambda batch, fdb: _snapshot(ns, batch, fdb), [
        _Proc([IP, "-4", "-d", "-j", "-n", ns, "-batch", "-"], BATCH),
        _Proc([BRIDGE, "-j", "-n", ns, "fdb", "show"])])


def snapshot(ns: str) -> Snapshot:
    result: Snapshot = start_snapshot(ns).result()
    return result


def _snapshot(ns: str, batch: bytes, fdb: bytes) -> Snapshot:
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
            for f in orjson.loads(fdb or b"[]")
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
