"""Runs the connectivity matrix: each probe executed in its source VM, compared to expectation."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from spanwire.dataplane import process
from spanwire.qualify.topology import TCP_PORT, Probe

NamespaceOf = Callable[[str], str]


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    reached: bool
    responder: str | None
    detail: str

    @property
    def ok(self) -> bool:
        """ICMP cannot name its responder; TCP must be answered by the expected VM."""
        if not self.probe.expect or self.probe.proto == "icmp":
            return self.reached == self.probe.expect
        return self.reached and self.responder == self.probe.responder

    def to_json(self) -> dict[str, Any]:
        return {
            "path_class": self.probe.path_class,
            "label": self.probe.label,
            "src": self.probe.src,
            "dst_ip": self.probe.dst_ip,
            "proto": self.probe.proto,
            "expect": self.probe.expect,
            "expected_responder": self.probe.responder,
            "reached": self.reached,
            "responder": self.responder,
            "ok": self.ok,
            "detail": self.detail,
        }


def start_whoami(ns: str, name: str, port: int = TCP_PORT) -> subprocess.Popen[bytes]:
    """`name` "--peer": answer with the caller's address (the outside host's service)."""
    return process.spawn(ns, [sys.executable, "-m", "spanwire.qualify.whoami", name, str(port)])


def run_probe(ns: str, probe: Probe, timeout: float = 2.0) -> ProbeResult:
    if probe.proto == "icmp":
        proc = process.run(ns, ["ping", "-n", "-q", "-c", "2", "-i", "0.2", "-W", "1",
                                probe.dst_ip], timeout=timeout + 5, check=False)
        reached = proc.returncode == 0
        detail = "reply" if reached else "no reply"
        return ProbeResult(probe, reached, None, detail if reached == probe.expect else
                           f"{detail}, expected {'reply' if probe.expect else 'none'}")
    script = f"exec 3<>/dev/tcp/{probe.dst_ip}/{probe.port} && head -n1 <&3"
    proc = process.run(ns, ["timeout", str(timeout), "bash", "-c", script],
                       timeout=timeout + 5, check=False)
    answer = proc.stdout.strip() or None
    reached = proc.returncode == 0 and answer is not None
    if reached and probe.expect and answer != probe.responder:
        detail = f"answered by {answer}, expected {probe.responder}"
    elif reached != probe.expect:
        detail = f"{'connected' if reached else 'no connection'}, expected " + (
            "a connection" if probe.expect else "none")
    else:
        detail = f"answered by {answer}" if reached else "refused or timed out"
    return ProbeResult(probe, reached, answer, detail)


def run_matrix(
    probes: list[Probe],
    ns_of: NamespaceOf,
    progress: Callable[[ProbeResult], None] | None = None,
    workers: int = 4,
) -> list[ProbeResult]:
    """Run probes a few at a time (they mostly wait on timeouts), in matrix order."""

    def one(probe: Probe) -> ProbeResult:
        result = run_probe(ns_of(probe.src), probe)
        if progress is not None:
            progress(result)
        return result

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, probes))
