"""nftables inside one named namespace, through `nft -j` (JSON in, JSON out).

Only ever run as `ip netns exec <ours> nft ...`: never on the host. Side
effects only; what to write is decided by the planners. One `apply` is one
`nft -f` batch, which the kernel commits as a single transaction: either every
command takes effect at once or (on any error) none does, and packets never
see a half-written table.

`agent.actual` reads only `list_tables` and `read_digest` (two short calls per
namespace, whatever the rule count), `agent.apply` writes with `apply` and
`delete_table`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from spanwire.dataplane import netns, process
from spanwire.errors import Unavailable

NFT = shutil.which("nft") or "/usr/sbin/nft"
FAMILY = "inet"
DIGEST_CHAIN = "sw-meta"  # agent.plan.nft_table.META_CHAIN
DIGEST_TAG = "spanwire-sg "  # agent.plan.nft_table.DIGEST_TAG
_ABSENT = "No such file or directory"  # nft's (and ip netns exec's) "not there"


def _run(ns: str, args: list[str], stdin: str | None = None, timeout: float = 30.0
         ) -> subprocess.CompletedProcess[str]:
    """One nft command in `ns`: through libnftables in a thread that entered `ns` when
    the binding loads (no process to start: a port's first packet waits on this), else
    `ip netns exec ns nft`."""
    if _LIB is not None:
        return _run_lib(ns, args, stdin)
    if not os.path.exists(NFT):
        raise Unavailable("nft is not installed (Debian package nftables); "
                          "security groups cannot be enforced on this node")
    try:
        return subprocess.run(process.in_ns(ns, [NFT, *args]), input=stdin,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"nft {' '.join(args)} in {ns} did not finish in {timeout} s") from exc


def _load_lib() -> Any:
    try:
        import nftables  # the upstream ctypes binding of libnftables (pip-nftables)

        nftables.Nftables()  # loads libnftables.so.1
        return nftables
    except (ImportError, OSError):
        return None


_LIB = _load_lib()


def _run_lib(ns: str, args: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
    """`nft [-j] ARGS` (or `-f -` with `stdin`) through libnftables, inside `ns`."""
    json_io = "-j" in args
    words = [a for a in args if a != "-j"]
    command = stdin if words[-2:] == ["-f", "-"] else " ".join(words)

    def body() -> tuple[int, str, str]:
        ctx = _LIB.Nftables()
        ctx.set_json_output(json_io)  # also makes it parse a JSON command buffer
        rc, out, err = ctx.cmd(command or "")
        return int(rc), str(out or ""), str(err or "")

    rc, out, err = netns.run_in(ns, body)
    return subprocess.CompletedProcess(["nft", *args], 0 if rc == 0 else 1, out, err)


def apply(ns: str, doc: dict[str, Any] | str, timeout: float = 30.0) -> None:
    """Run one JSON batch (`{"nftables": [...]}` or its text) in `ns`, atomically."""
    payload = doc if isinstance(doc, str) else json.dumps(doc, sort_keys=True)
    proc = _run(ns, ["-j", "-f", "-"], payload, timeout)
    if proc.returncode != 0:
        raise Unavailable(f"nft rejected the ruleset for {ns} (nothing was changed): "
                          f"{proc.stderr.strip()[:1500]}")


def _list(ns: str, args: list[str]) -> dict[str, Any] | None:
    proc = _run(ns, ["-j", "list", *args])
    if proc.returncode != 0:
        if _ABSENT in proc.stderr:
            return None
        raise Unavailable(f"nft list {' '.join(args)} in {ns} failed: {proc.stderr.strip()[:500]}")
    try:
        parsed: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as exc:
        raise Unavailable(f"nft list {' '.join(args)} in {ns} printed invalid JSON") from exc
    return parsed


def list_table(ns: str, table: str = "spanwire", family: str = FAMILY) -> dict[str, Any] | None:
    """`nft -j list table <family> <table>`, or None if the table does not exist."""
    return _list(ns, ["table", family, table])


def list_tables(ns: str, family: str = FAMILY) -> frozenset[str]:
    """Names of the `family` tables in `ns` that hold a chain (empty if there are none).

    Read from `list chains`, not `list tables`: nft 1.0.6 builds its whole rule
    cache for `list tables` (0.13 s with 1,000 ports' chains), but not for
    chains (0.02 s). Every table spanwire writes has chains, and a table
    without chains filters nothing, so nothing the agent owns is missed.
    """
    listing = _list(ns, ["chains", family])
    return frozenset(str(item["chain"]["table"]) for item in (listing or {}).get("nftables", [])
                     if "chain" in item and item["chain"].get("family") == family)


def delete_table(ns: str, table: str = "spanwire", family: str = FAMILY) -> bool:
    """Delete the table; False if it was not there (idempotent: nft 1.0.6 has no `destroy`)."""
    proc = _run(ns, ["delete", "table", family, table])
    if proc.returncode == 0:
        return True
    if _ABSENT in proc.stderr:
        return False
    raise Unavailable(f"nft delete table {family} {table} in {ns} failed: "
                      f"{proc.stderr.strip()[:500]}")


def read_digest(ns: str, table: str = "spanwire") -> str | None:
    """The digest the security-group table was last written with (see plan.security_groups).

    Lists one one-rule chain, not the table, so a warm restart with thousands
    of rules costs one short nft call. None if the table or its digest is absent.
    """
    listing = _list(ns, ["chain", FAMILY, table, DIGEST_CHAIN])
    for item in (listing or {}).get("nftables", []):
        comment = item.get("rule", {}).get("comment", "")
        if comment.startswith(DIGEST_TAG):
            return str(comment[len(DIGEST_TAG):])
    return None


def list_set(ns: str, name: str, table: str = "spanwire") -> list[Any] | None:
    """Elements of a named set (as nft prints them), or None if it does not exist."""
    listing = _list(ns, ["set", FAMILY, table, name])
    for item in (listing or {}).get("nftables", []):
        if "set" in item:
            return list(item["set"].get("elem", []))
    return None
