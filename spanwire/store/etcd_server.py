"""Start and stop real etcd members on loopback, for tests, benchmarks and the testbed.

An `EtcdCluster` owns its processes (by PID) and its temp dir: `stop()` ends
every member it started and removes the dir, so a crashed test run does not
leave etcd behind (members also get SIGKILL if the starting thread dies, via
PR_SET_PDEATHSIG). Only 127.0.0.1 ports are used; nothing else on the host is
touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from spanwire.errors import Unavailable

ETCD_BINARY = "/usr/bin/etcd"
_PR_SET_PDEATHSIG = 1


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGKILL etcd if we die."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class EtcdMember:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def healthy(self, timeout: float = 0.5) -> bool:
        """True if this member answers /health with a leader elected."""
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=timeout) as r:
                return json.loads(r.read()).get("health") in (True, "true")
        except (OSError, ValueError):
            return False


class EtcdCluster:
    """One etcd member, or a cluster of several, on free loopback ports in a temp dir.

    Use as a context manager, or call `start()` and `stop()` (always, in `finally`).
    """

    def __init__(
        self,
        size: int = 1,
        base_dir: str | Path | None = None,
        name: str | None = None,
        binary: str = ETCD_BINARY,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        progress_notify_s: int = 5,
    ) -> None:
        if not os.access(binary, os.X_OK):
            raise Unavailable(f"etcd binary {binary} not found; install Debian's etcd-server")
        self.binary = binary
        self._own_dir = base_dir is None
        self.base_dir = Path(base_dir or tempfile.mkdtemp(prefix="spanwire-etcd-"))
        self.cluster_name = name or f"sw-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.progress_notify_s = progress_notify_s
        ports = free_ports(2 * size)
        self.members = [
            EtcdMember(
                name=f"{self.cluster_name}-{i}",
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                data_dir=self.base_dir / f"m{i}" / "data",
                log_path=self.base_dir / f"m{i}" / "etcd.log",
            )
            for i in range(size)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def url(self) -> str:
        """The store URL for `spanwire.store.connect`."""
        return "etcd://" + ",".join(self.endpoints)

    def _args(self, m: EtcdMember) -> list[str]:
        initial = ",".join(f"{x.name}={x.peer_url}" for x in self.members)
        return [
            self.binary,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url,
            "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url,
            "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", initial,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.cluster_name,
            "--heartbeat-interval", str(self.heartbeat_ms),
            "--election-timeout", str(self.election_ms),
            "--experimental-watch-progress-notify-interval", f"{self.progress_notify_s}s",
            "--logger", "zap",
            "--log-level", "warn",
        ]  # fmt: skip

    def start_member(self, index: int) -> None:
        """Start (or restart, keeping its data) one member; does not wait for health."""
        m = self.members[index]
        if m.running():
            return
        m.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(m.log_path, "ab") as log:
            m.proc = subprocess.Popen(
                self._args(m),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=_die_with_parent,
            )

    def start(self, timeout: float = 30.0) -> EtcdCluster:
        """Start every member and wait until all are healthy; on failure stop and raise."""
        try:
            for i in range(len(self.members)):
                self.start_member(i)
            self.wait_healthy(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self, indices: list[int] | None = None, timeout: float = 30.0) -> None:
        """Block until the given members (default: all running) report a leader."""
        deadline = time.monotonic() + timeout
        todo = indices if indices is not None else list(range(len(self.members)))
        while True:
            pending = [i for i in todo if not self.members[i].healthy()]
            if not pending:
                return
            for i in pending:
                m = self.members[i]
                if m.proc is not None and m.proc.poll() is not None:
                    raise Unavailable(
                        f"etcd member {m.name} exited with {m.proc.returncode}: {self._tail(m)}"
                    )
            if time.monotonic() > deadline:
                names = ", ".join(self.members[i].name for i in pending)
                raise Unavailable(f"etcd members not healthy after {timeout:.0f}s: {names}")
            time.sleep(0.05)

    def kill(self, index: int) -> None:
        """SIGKILL one member (a crash, not a clean shutdown) and reap it."""
        m = self.members[index]
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(signal.SIGKILL)
            m.proc.wait(timeout=10)

    def terminate(self, index: int, grace: float = 5.0) -> None:
        """Stop one member cleanly (SIGTERM), escalating to SIGKILL after `grace` s."""
        m = self.members[index]
        if m.proc is None or m.proc.poll() is not None:
            return
        m.proc.send_signal(signal.SIGTERM)
        try:
            m.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill(index)

    def restart(self, index: int, timeout: float = 30.0) -> None:
        """Kill (if running) and start one member again with its data, then wait for health."""
        self.kill(index)
        self.start_member(index)
        self.wait_healthy([index], timeout=timeout)

    def stop(self, grace: float | None = None) -> None:
        """Stop every member by PID and remove the temp dir this cluster created.

        Members get SIGTERM one at a time (a clean shutdown, fast when peers are
        still up), then SIGKILL after `grace` s. When the data dir is ours and is
        about to be deleted there is nothing to preserve, so the grace is short.
        """
        if grace is None:
            grace = 1.0 if self._own_dir else 5.0
        for i in range(len(self.members)):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self.terminate(i, grace=grace)
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def _tail(self, m: EtcdMember, limit: int = 600) -> str:
        try:
            return m.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
