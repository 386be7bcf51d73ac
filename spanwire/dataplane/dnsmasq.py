"""dnsmasq per routing namespace: start, reload (SIGHUP re-reads hosts/opts files), stop, find.

The argv always carries `--conf-file=/dev/null --port=0` (rendered by
agent.dhcp): DHCP only, no DNS, no system configuration.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence

from spanwire.dataplane import process
from spanwire.errors import InvalidInput


def _pidfile(argv: Sequence[str]) -> str:
    for arg in argv:
        if arg.startswith("--pid-file="):
            return arg.split("=", 1)[1]
    raise InvalidInput("dnsmasq argv needs --pid-file=")


def _check(argv: Sequence[str]) -> None:
    if "--conf-file=/dev/null" not in argv or "--port=0" not in argv:
        raise InvalidInput("dnsmasq must run with --conf-file=/dev/null --port=0")


def write_files(files: Sequence[tuple[str, str]]) -> None:
    """Atomically replace each file (dnsmasq may be reading the old one)."""
    for path, content in files:
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as handle:
            handle.write(content)
        os.chmod(tmp, 0o644)  # dnsmasq re-reads them after dropping privileges
        os.replace(tmp, path)


def read_files(paths: Sequence[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for path in paths:
        try:
            with open(path) as handle:
                out.append((path, handle.read()))
        except OSError:
            out.append((path, ""))
    return tuple(out)


def start(ns: str, argv: Sequence[str], files: Sequence[tuple[str, str]]) -> int:
    _check(argv)
    write_files(files)
    return process.start_daemon(ns, argv, _pidfile(argv))


def reload(ns: str, pid: int, files: Sequence[tuple[str, str]]) -> None:
    write_files(files)
    process.signal_pid(pid, ns, signal.SIGHUP)


def stop(ns: str, pid: int, run_dir: str | None = None) -> None:
    process.stop_pid(pid, ns)
    if run_dir:
        for name in ("hosts", "opts", "dnsmasq.pid"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(run_dir, name))
        with contextlib.suppress(OSError):
            os.rmdir(run_dir)


def find(ns: str, run_dir: str) -> tuple[int, tuple[str, ...]] | None:
    """(pid, argv) of the dnsmasq running in `ns` from `run_dir`, if any."""
    pid = process.read_pidfile(os.path.join(run_dir, "dnsmasq.pid"))
    if not pid or not process.is_ours(pid, ns):
        return None
    argv = process.cmdline(pid)
    if not argv or not argv[0].endswith("dnsmasq"):
        return None
    return pid, argv
