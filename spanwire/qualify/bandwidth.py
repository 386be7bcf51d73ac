"""Bandwidth per path class, interleaved with the raw underlay in the same run.

Samples of every class are taken in rounds (underlay, class 1, class 2, ...),
so slow drift of the machine affects all classes alike and the ratios stay
meaningful on a noisy 2-core box. What drift cannot explain is a hypervisor
taking CPU from the machine during some samples only: each sample records the
share of its CPU time that was stolen (`steal`), and the report says when a
run was noisy.
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from spanwire.dataplane import process
from spanwire.errors import Unavailable
from spanwire.qualify import steal
from spanwire.qualify.verdict import Verdict, bootstrap_median_ratio, compare

IPERF_PORT = 5201


@dataclass(frozen=True)
class Endpoint:
    """Where to run the client, and which server (namespace, address) to reach."""

    client_ns: str
    server_ns: str
    server_ip: str


@dataclass
class ClassResult:
    samples_gbps: list[float] = field(default_factory=list)
    verdict: Verdict | None = None
    steal_shares: list[float] = field(default_factory=list)

    def summary(self, underlay: list[float]) -> dict[str, Any]:
        low, high = bootstrap_median_ratio(self.samples_gbps, underlay)
        return {
            "samples_gbps": self.samples_gbps,
            "median_gbps": statistics.median(self.samples_gbps),
            "ratio": statistics.median(self.samples_gbps) / statistics.median(underlay),
            "ci_low": low,
            "ci_high": high,
            "verdict": None if self.verdict is None else self.verdict.to_json(),
            "steal_shares": self.steal_shares,
        }


@dataclass
class Measured:
    """Gbit/s of every sample by class, and the share of each sample's CPU time that the
    hypervisor took (see `steal`)."""

    gbps: dict[str, list[float]]
    steal_shares: dict[str, list[float]]


def iperf_once(ep: Endpoint, seconds: float) -> float:
    """One TCP sample in Gbit/s (receiver side).

    iperf3 reads -t as a whole number and treats 0 as "run forever", so the
    duration is rounded and never below one second.
    """
    seconds = max(1, round(seconds))
    proc = process.run(
        ep.client_ns,
        ["iperf3", "-c", ep.server_ip, "-p", str(IPERF_PORT), "-t", str(seconds), "-J",
         "--connect-timeout", "3000"],
        timeout=seconds + 20,
        check=False,
    )
    try:
        data = json.loads(proc.stdout)
        return float(data["end"]["sum_received"]["bits_per_second"]) / 1e9
    except (ValueError, KeyError) as exc:
        raise Unavailable(
            f"iperf3 {ep.client_ns} → {ep.server_ip} failed: {proc.stdout[-300:]}{proc.stderr}"
        ) from exc


def measure(
    endpoints: dict[str, Endpoint],
    rounds: int,
    seconds: float,
    progress: Callable[[str], None] | None = None,
) -> Measured:
    """`rounds` interleaved samples of every class (one of which should be the underlay)."""
    servers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for ep in endpoints.values():
            if ep.server_ns not in servers:
                servers[ep.server_ns] = process.spawn(
                    ep.server_ns, ["iperf3", "-s", "-p", str(IPERF_PORT)])
        results = Measured({name: [] for name in endpoints}, {name: [] for name in endpoints})
        for _ in range(rounds):
            for name, ep in endpoints.items():
                gbps, stolen, took = steal.during(functools.partial(_retrying, ep, seconds))
                results.gbps[name].append(gbps)
                results.steal_shares[name].append(round(steal.share(stolen, took), 4))
                if progress is not None:
                    progress(name)
        return results
    finally:
        for server in servers.values():
            process.stop_child(server)


def _retrying(ep: Endpoint, seconds: float) -> float:
    # The server may take a moment to listen; one retry covers it.
    try:
        return iperf_once(ep, seconds)
    except Unavailable:
        return iperf_once(ep, seconds)


def against_baseline(samples: list[float], baseline: list[float]) -> Verdict | None:
    """The regression verdict versus the known-good snapshot's samples, if there are enough."""
    if len(samples) < 3 or len(baseline) < 3:
        return None
    return compare(samples, baseline)
