"""A small supervisor for the processes the data plane needs (dnsmasq, udhcpc, iperf3).

Processes run inside a named namespace via `ip netns exec`. Daemons are
tracked by pid file, not as our children, so they outlive an agent restart
(DHCP keeps answering while the agent is down). Before signalling a pid we
check it is still the process we started — same argv, same namespace — so a
recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence

from spanwire.dataplane import netns
from spanwire.errors import Unavailable

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"


def in_ns(ns: str, argv: Sequence[str]) -> list[str]:
    netns._check_name(ns)
    return [IP, "netns", "exec", ns, *argv]


def run(ns: str, argv: Sequence[str], timeout: float = 30.0, check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    """Run `argv` in namespace `ns` to completion."""
    try:
        proc = subprocess.run(in_ns(ns, argv), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"{argv[0]} in {ns} did not finish in {timeout} s") from exc
    if check and proc.returncode != 0:
        raise Unavailable(f"{' '.join(argv)} in {ns} failed ({proc.returncode}): "
                          f"{proc.stderr.strip()[:500]}")
    return proc


def run_input(ns: str, argv: Sequence[str], stdin: str, timeout: float = 30.0
              ) -> subprocess.CompletedProcess[str]:
    """Run `argv` in `ns` with `stdin` as input; Unavailable if it fails."""
    try:
        proc = subprocess.run(in_ns(ns, argv), input=stdin, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"{argv[0]} in {ns} did not finish in {timeout} s") from exc
    if proc.returncode != 0:
        raise Unavailable(f"{' '.join(argv)} in {ns} failed ({proc.returncode}): "
                          f"{proc.stderr.strip()[:500]}")
    return proc


def spawn(ns: str, argv: Sequence[str], log_path: str | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` in `ns` in its own session (stopped with `stop_child`)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(in_ns(ns, argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


def stop_child(proc: subprocess.Popen[bytes], timeout: float = 3.0) -> None:
    """Stop a process we spawned (its whole session) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


def cmdline(pid: int) -> tuple[str, ...] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return tuple(p.decode() for p in raw.split(b"\0") if p)


def ns_of(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def read_pidfile(path: str) -> int:
    try:
        with open(path) as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def is_ours(pid: int, ns: str, argv: Sequence[str] | None = None) -> bool:
    """`pid` is alive, in namespace `ns`, and (if given) runs exactly `argv`."""
    if pid <= 0 or not netns.exists(ns):
        return False
    if ns_of(pid) != netns.inode(ns):
        return False
    if argv is not None and cmdline(pid) != tuple(argv):
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split(")")[-1].split()[0] != "Z"


def start_daemon(ns: str, argv: Sequence[str], pidfile: str, timeout: float = 5.0) -> int:
    """Start a self-daemonizing program in `ns`; return its pid (from its pid file)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)
    run(ns, argv, timeout=timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pidfile(pidfile)
        if pid and is_ours(pid, ns):
            return pid
        time.sleep(0.01)
    raise Unavailable(f"{argv[0]} in {ns} did not write {pidfile}")


def signal_pid(pid: int, ns: str, sig: int) -> bool:
    """Send `sig` to `pid` if it is still our process in `ns`."""
    if not is_ours(pid, ns):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    return True


def stop_pid(pid: int, ns: str, timeout: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, a daemon we started in `ns`."""
    if not signal_pid(pid, ns, signal.SIGTERM):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ns_of(pid) is None or not is_ours(pid, ns):
            return
        time.sleep(0.02)
    signal_pid(pid, ns, signal.SIGKILL)


def pids_in(namespaces: Sequence[str]) -> list[int]:
    """Every process whose network namespace is one of `namespaces` (never the host's)."""
    inodes = {netns.inode(n) for n in namespaces if netns.exists(n)} - {netns.host_inode()}
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and ns_of(int(entry)) in inodes:
            pids.append(int(entry))
    return pids


def kill_all_in(namespaces: Sequence[str], timeout: float = 3.0) -> list[int]:
    """SIGTERM then SIGKILL every process inside `namespaces` (crash cleanup)."""
    victims = pids_in(namespaces)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pids_in(namespaces):
        time.sleep(0.05)
    for pid in pids_in(namespaces):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return victims
