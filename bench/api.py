"""Benchmark the API: port creates/s with p50/p99 latency, and listing 10,000 ports.

Scenarios: SQLite and etcd stores, one and two `spanwire serve` replicas,
concurrent clients creating ports on one /18 until the scenario's target is
reached (or its time budget runs out: the table says which). The headline
scenario (etcd, two replicas) grows to 10,000 ports and then lists them.

    .venv/bin/python bench/api.py            # writes bench/results/api.json

Every process started here is stopped by its PID; temp dirs are removed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from spanwire.cli.serve import serve_argv
from spanwire.store.etcd_server import EtcdCluster, free_ports

RESULTS = Path(__file__).parent / "results" / "api.json"
PASSWORD = "bench-" + secrets.token_hex(8)


class Replica:
    """One `spanwire serve` subprocess, stopped by PID."""

    def __init__(self, store_url: str, log: Path) -> None:
        self.url = f"http://127.0.0.1:{free_ports(1)[0]}"
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            serve_argv(store_url, self.url.removeprefix("http://"), "--log-level", "warning"),
            env=dict(os.environ, SPANWIRE_ADMIN_PASSWORD=PASSWORD),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {log.read_text()[-1000:]}")
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("serve did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


def _token(url: str) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "admin", "domain": {"name": "Default"}, "password": PASSWORD}
                },
            },
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
        }
    }
    r = httpx.post(f"{url}/identity/v3/auth/tokens", json=body)
    r.raise_for_status()
    return r.headers["X-Subject-Token"]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_scenario(
    store_url: str,
    replicas: int,
    target: int,
    budget: float,
    clients: int,
    tmp: Path,
    list_runs: int,
) -> dict[str, Any]:
    servers: list[Replica] = []
    try:
        for i in range(replicas):
            servers.append(Replica(store_url, tmp / f"serve-{i}.log"))
        tokens = [_token(s.url) for s in servers]
        h = {"X-Auth-Token": tokens[0]}
        project = httpx.get(
            f"{servers[0].url}/identity/v3/auth/tokens", headers={**h, "X-Subject-Token": tokens[0]}
        ).json()
        project_id = project["token"]["project"]["id"]
        httpx.put(
            f"{servers[0].url}/v2.0/quotas/{project_id}", json={"quota": {"port": -1}}, headers=h
        ).raise_for_status()
        net = httpx.post(
            f"{servers[0].url}/v2.0/networks", json={"network": {"name": "bench"}}, headers=h
        ).json()["network"]["id"]
        httpx.post(
            f"{servers[0].url}/v2.0/subnets",
            json={"subnet": {"network_id": net, "cidr": "10.64.0.0/18"}},
            headers=h,
        ).raise_for_status()

        latencies: list[float] = []
        errors: dict[int, int] = {}
        lock = threading.Lock()
        left = [target]
        stop_at = time.monotonic() + budget

        def worker(n: int) -> None:
            server = n % replicas
            with httpx.Client(
                base_url=servers[server].url, timeout=60, headers={"X-Auth-Token": tokens[server]}
            ) as c:
                while time.monotonic() < stop_at:
                    with lock:
                        if left[0] <= 0:
                            return
                        left[0] -= 1
                    t0 = time.perf_counter()
                    r = c.post("/v2.0/ports", json={"port": {"network_id": net}})
                    dt = time.perf_counter() - t0
                    with lock:
                        if r.status_code == 201:
                            latencies.append(dt)
                        else:
                            errors[r.status_code] = errors.get(r.status_code, 0) + 1

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(worker, range(clients)))
        elapsed = time.perf_counter() - start
        result: dict[str, Any] = {
            "replicas": replicas,
            "clients": clients,
            "target_ports": target,
            "created": len(latencies),
            "errors": errors,
            "seconds": round(elapsed, 2),
            "creates_per_s": round(len(latencies) / elapsed, 1),
            "create_p50_ms": round(_pct(latencies, 0.5) * 1000, 1),
            "create_p99_ms": round(_pct(latencies, 0.99) * 1000, 1),
            "reached_target": len(latencies) >= target,
        }
        if list_runs:
            times = []
            count = 0
            with httpx.Client(
                base_url=servers[-1].url, timeout=120, headers={"X-Auth-Token": tokens[-1]}
            ) as c:
                for _ in range(list_runs):
                    t0 = time.perf_counter()
                    r = c.get("/v2.0/ports")
                    count = len(r.json()["ports"])
                    times.append(time.perf_counter() - t0)
            result.update(
                list_ports=count,
                list_p50_ms=round(_pct(times, 0.5) * 1000, 1),
                list_p99_ms=round(_pct(times, 0.99) * 1000, 1),
            )
        return result
    finally:
        for s in servers:
            s.stop()


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    etcd = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "mem_gb": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "etcd": etcd.splitlines()[0] if etcd else "?",
        "loadavg_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=10_000, help="ports in the headline scenario")
    parser.add_argument("--small", type=int, default=2_000, help="ports in the other scenarios")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per small scenario")
    parser.add_argument("--big-budget", type=float, default=150.0)
    parser.add_argument("--list-runs", type=int, default=20)
    args = parser.parse_args()
    console = Console()
    facts = machine()
    scenarios = [
        ("sqlite", 1, args.small, args.budget, 0),
        ("sqlite", 2, args.small, args.budget, 0),
        ("etcd", 1, args.small, args.budget, 0),
        ("etcd", 2, args.big, args.big_budget, args.list_runs),
    ]
    results = []
    for store, replicas, target, budget, list_runs in scenarios:
        tmp = Path(tempfile.mkdtemp(prefix="spanwire-bench-"))
        cluster = None
        try:
            if store == "etcd":
                cluster = EtcdCluster(size=1, base_dir=tmp / "etcd").start()
                url = cluster.url
            else:
                url = f"sqlite:///{tmp}/state.db"
            console.print(f"[bold]{store}[/], {replicas} replica(s): up to {target} ports ...")
            result = run_scenario(url, replicas, target, budget, args.clients, tmp, list_runs)
            results.append({"store": store, **result})
        finally:
            if cluster is not None:
                cluster.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    facts["loadavg_end"] = os.getloadavg()

    table = Table(title="spanwire api: port creates and listing")
    for col in (
        "store",
        "replicas",
        "ports",
        "creates/s",
        "p50 ms",
        "p99 ms",
        "list 10k p50",
        "list 10k p99",
        "errors",
    ):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["store"],
            str(r["replicas"]),
            f"{r['created']}{'' if r['reached_target'] else ' (budget)'}",
            str(r["creates_per_s"]),
            str(r["create_p50_ms"]),
            str(r["create_p99_ms"]),
            str(r.get("list_p50_ms", "-")),
            str(r.get("list_p99_ms", "-")),
            str(r["errors"] or "-"),
        )
    console.print(table)
    head = results[-1]
    targets = {
        "etcd_2_replicas_creates_per_s": {
            "target": 300,
            "got": head["creates_per_s"],
            "met": head["creates_per_s"] >= 300,
        },
        "list_10k_p99_ms": {
            "target": 1000,
            "got": head.get("list_p99_ms"),
            "met": (head.get("list_p99_ms") or 1e9) <= 1000 and head.get("list_ports", 0) >= 10_000,
        },
    }
    for name, t in targets.items():
        console.print(
            f"{name}: {t['got']} (target {t['target']}) "
            f"{'[green]met[/]' if t['met'] else '[red]MISSED[/]'}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": facts,
                "scenarios": results,
                "targets": targets,
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "median_create_p50_ms": statistics.median(r["create_p50_ms"] for r in results),
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
