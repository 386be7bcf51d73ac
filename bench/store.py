"""Store benchmark: SQLite vs a single etcd member on this machine, in one run.

    .venv/bin/python bench/store.py [--quick]

Measures, per backend: sequential puts/s, uncontended compare-and-swap/s (get +
txn), the time to range 10,000 keys, and watch delivery latency (from just
before a put to the event arriving at a watcher in the same process; so it
includes the put itself). Prints a table, writes bench/results/store.json and a
markdown copy next to it. The etcd member is started and stopped here, by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import machine  # bench/machine.py, next to this script
from rich.console import Console
from rich.table import Table

from spanwire.store import Put, Store, connect
from spanwire.store.etcd_server import ETCD_BINARY, EtcdCluster

RESULTS = Path(__file__).resolve().parent / "results"
console = Console()


def timed_rate(op: Callable[[int], object], count: int, budget_s: float) -> float:
    """Operations per second over `count` calls (or fewer if `budget_s` runs out)."""
    started = time.perf_counter()
    done = 0
    while done < count and time.perf_counter() - started < budget_s:
        op(done)
        done += 1
    return done / (time.perf_counter() - started)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_backend(store: Store, scale: float) -> dict[str, float]:
    prefix = f"/bench/{int(time.time() * 1000)}/"
    n_ops = int(2000 * scale)
    puts = timed_rate(lambda i: store.put(f"{prefix}p/{i % 100}", b"x" * 100), n_ops, 15)

    store.put(prefix + "cas", b"0")

    def cas(_: int) -> None:
        kv = store.get(prefix + "cas")
        assert kv is not None
        store.update(kv, b"%d" % (int(kv.value) + 1))

    cas_rate = timed_rate(cas, n_ops, 15)

    n_keys = 10_000
    for start in range(0, n_keys, 100):
        store.txn([], [Put(f"{prefix}r/{start + i:05d}", b"v" * 100) for i in range(100)])
    range_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        listing = store.range(prefix + "r/")
        range_times.append(time.perf_counter() - t0)
        assert len(listing.items) == n_keys

    latencies = []
    with store.watch(prefix + "w/", store.revision() + 1) as watch:
        for i in range(int(300 * scale)):
            t0 = time.perf_counter()
            store.put(f"{prefix}w/{i % 10}", b"%d" % i)
            event = watch.get(timeout=5)
            assert event is not None, "watch event did not arrive"
            latencies.append(time.perf_counter() - t0)
    return {
        "puts_per_s": round(puts, 1),
        "cas_per_s": round(cas_rate, 1),
        "range_10k_s": round(statistics.median(range_times), 4),
        "watch_p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "watch_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def machine_facts(load_at_start: float) -> dict[str, object]:
    return {
        **machine.facts(load_at_start),
        "sqlite": sqlite3.sqlite_version,
        "storage": "temp dir on the root disk (fsync on every commit, both backends)",
    }


METRICS = [
    ("puts_per_s", "puts/s", True),
    ("cas_per_s", "CAS/s (get+txn)", True),
    ("range_10k_s", "range 10,000 keys (s)", False),
    ("watch_p50_ms", "watch latency p50 (ms)", False),
    ("watch_p99_ms", "watch latency p99 (ms)", False),
]


def render(results: dict[str, dict[str, float]]) -> tuple[Table, str]:
    table = Table(title="spanwire store benchmark (single client, same machine)")
    table.add_column("metric")
    for name in results:
        table.add_column(name, justify="right")
    table.add_column("etcd / sqlite", justify="right")
    md = [
        "| metric | " + " | ".join(results) + " | etcd / sqlite |",
        "|---" * (len(results) + 2) + "|",
    ]
    for key, label, _higher_better in METRICS:
        values = [results[b][key] for b in results]
        ratio = ""
        if "sqlite" in results and "etcd" in results and results["sqlite"][key]:
            ratio = f"{results['etcd'][key] / results['sqlite'][key]:.2f}x"
        table.add_row(label, *(f"{v:g}" for v in values), ratio)
        md.append(f"| {label} | " + " | ".join(f"{v:g}" for v in values) + f" | {ratio} |")
    return table, "\n".join(md) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the work (smoke run)")
    args = parser.parse_args()
    scale = 0.25 if args.quick else 1.0
    load_at_start = round(os.getloadavg()[0], 2)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="spanwire-bench-") as tmp:
        with console.status("sqlite ..."), connect(f"sqlite://{tmp}/state.db") as store:
            results["sqlite"] = bench_backend(store, scale)
        if os.access(ETCD_BINARY, os.X_OK):
            with (
                console.status("etcd (1 member) ..."),
                EtcdCluster(size=1) as cluster,
                connect(cluster.url) as store,
            ):
                results["etcd"] = bench_backend(store, scale)
        else:
            console.print(f"[yellow]{ETCD_BINARY} missing: etcd not measured[/]")
    table, markdown = render(results)
    console.print(table)
    facts = machine_facts(load_at_start)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "store.json").write_text(
        json.dumps({"machine": facts, "scale": scale, "results": results}, indent=2) + "\n"
    )
    header = "# Store benchmark\n\n" + "\n".join(f"- {k}: {v}" for k, v in facts.items())
    (RESULTS / "store.md").write_text(
        header + "\n\nWatch latency runs from just before a put to the event's arrival "
        "(so it includes the put).\n\n" + markdown
    )
    console.print(f"wrote {RESULTS / 'store.json'} and store.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
