"""Failover suite: break one component while a constant-rate probe runs, count the loss.

The probe is ping at 100 packets/s between two VMs whose path does not
involve the broken component's node (or, for an agent or the api, whose
forwarding must not depend on the control plane at all). Loss times 10 ms is the
outage a tenant would have seen.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from spanwire.dataplane import process

RATE_INTERVAL = 0.01  # 100 packets/s


@dataclass(frozen=True)
class FailoverResult:
    fault: str
    sent: int
    lost: int
    outage_ms: float
    ok: bool
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _parse(output: str) -> tuple[int, int]:
    match = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", output)
    if match is None:
        return 0, 0
    return int(match.group(1)), int(match.group(2))


def under_probe(
    fault: str,
    src_ns: str,
    dst_ip: str,
    action: Callable[[], None],
    seconds: float = 4.0,
    settle: float = 0.5,
    allowed_loss: int = 0,
) -> FailoverResult:
    """Run `action` in the middle of a `seconds`-long 100 pps probe from `src_ns` to `dst_ip`."""
    return under_probes(fault, [("", src_ns, dst_ip)], action, seconds, settle, allowed_loss)[0]


def under_probes(
    fault: str,
    flows: list[tuple[str, str, str]],
    action: Callable[[], None],
    seconds: float = 4.0,
    settle: float = 0.5,
    allowed_loss: int = 0,
) -> list[FailoverResult]:
    """One fault, several simultaneous 100 pps probes ((label, src_ns, dst_ip) each).

    A result's fault is `fault`, followed by its flow's label when it has one.
    """
    count = int(seconds / RATE_INTERVAL)
    probes = []
    for _label, src_ns, dst_ip in flows:
        argv = ["ping", "-n", "-q", "-i", str(RATE_INTERVAL), "-c", str(count), "-W", "1",
                dst_ip]
        probes.append(subprocess.Popen(process.in_ns(src_ns, argv), stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True))
    detail = ""
    outputs = []
    try:
        time.sleep(settle)
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - reported as a failed fault injection
            detail = f"fault action failed: {exc}"
        outputs = [probe.communicate(timeout=seconds + 30)[0] for probe in probes]
    finally:
        for probe in probes:
            if probe.poll() is None:
                probe.kill()
                probe.wait()
    results = []
    for (label, _, _), out in zip(flows, outputs, strict=True):
        sent, received = _parse(out)
        lost = sent - received
        why = detail or ("" if sent else f"probe did not run: {out.strip()[-200:]}")
        results.append(FailoverResult(f"{fault}: {label}" if label else fault, sent, lost,
                                      lost * RATE_INTERVAL * 1000,
                                      sent > 0 and lost <= allowed_loss and not detail, why))
    return results
