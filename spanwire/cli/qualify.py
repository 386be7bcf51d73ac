"""`spanwire qualify` and `spanwire demo` (qualify with the embedded defaults)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from spanwire.cli.errors import friendly
from spanwire.cli.options import DEFAULT_STATE_DIR, ledger_store_url
from spanwire.errors import InvalidInput
from spanwire.qualify.ledger import Ledger
from spanwire.qualify.lifecycle import SoakPolicy
from spanwire.qualify.topology import SUITES
from spanwire.store import connect

# The suites' code pulls in scipy and matplotlib (seconds to import), so it is
# imported inside the commands, keeping every other `spanwire` command fast.

console = Console()

if TYPE_CHECKING:
    from spanwire.qualify.run import QualifyOptions


def _suites(value: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in value.split(",") if s.strip())
    unknown = [s for s in chosen if s not in SUITES]
    if unknown or not chosen:
        raise InvalidInput(f"unknown suite(s) {', '.join(unknown) or '(none)'}; "
                           f"choose from {', '.join(SUITES)}")
    return chosen


def _run_once(opts: QualifyOptions, ledger: Ledger, json_file: Path | None,
              html_file: Path | None) -> bool:
    from spanwire.qualify import report
    from spanwire.qualify.run import qualify

    doc = qualify(opts, ledger, console)
    report.render_console(doc, console)
    report.write(doc, json_file, html_file)
    for label, path in (("JSON", json_file), ("HTML", html_file)):
        if path is not None:
            console.print(f"{label} report: {path}")
    return bool(doc["passed"])


def qualify_cmd(
    nodes: Annotated[int, typer.Option(min=2, max=8, help="Nodes in the testbed.")] = 3,
    store: Annotated[str | None, typer.Option(help="Testbed store URL (default: a fresh "
                                              "SQLite file in the state dir).")] = None,
    suite: Annotated[str, typer.Option(help=f"Comma-separated: {','.join(SUITES)}.")] = ",".join(
        SUITES),
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the JSON report.")] = None,
    html_file: Annotated[Path | None, typer.Option("--html", help="Write the HTML report.")] = None,
    ledger_store: Annotated[str | None, typer.Option(help="Where the snapshot ledger lives "
                                                     "(default: $SPANWIRE_STORE or "
                                                     f"{DEFAULT_STATE_DIR}/ledger.db).")] = None,
    etcd: Annotated[int, typer.Option(min=0, max=5, help="Run the store on an etcd cluster of "
                                      "this many members, started by qualify (3 adds the "
                                      "etcd-member failover).")] = 0,
    state_dir: Annotated[str, typer.Option(help="Scratch dir of the testbed.")] = os.path.join(
        DEFAULT_STATE_DIR, "qualify"),
    rounds: Annotated[int, typer.Option(min=3, help="Bandwidth samples per path class.")] = 5,
    seconds: Annotated[int, typer.Option(min=1, help="Seconds per iperf3 sample.")] = 2,
    soak_days: Annotated[float, typer.Option(help="Soak window before known-good.")] = 7.0,
    min_runs: Annotated[int, typer.Option(help="Passing runs needed for known-good.")] = 3,
    periodic: Annotated[
        float | None, typer.Option(help="Run again every N hours, forever.")
    ] = None,
) -> None:
    """Build a cloud, run the suites, report, and move the snapshot through the ledger."""
    from datetime import timedelta

    from spanwire.qualify.run import QualifyOptions

    if store and etcd:
        raise InvalidInput("give either --store (a store you run) or --etcd N (qualify starts "
                           "one), not both")
    opts = QualifyOptions(nodes=nodes, store_url=store, suites=_suites(suite),
                          state_dir=state_dir, rounds=rounds, seconds=seconds,
                          etcd_members=etcd)
    ledger = Ledger(connect(ledger_store_url(ledger_store)),
                    SoakPolicy(window=timedelta(days=soak_days), min_runs=min_runs))
    while True:
        passed = _run_once(opts, ledger, json_file, html_file)
        if periodic is None:
            raise typer.Exit(0 if passed else 1)
        ledger.refresh()
        console.print(f"next run in {periodic} h")
        time.sleep(periodic * 3600)


def demo_cmd() -> None:
    """The main job on the embedded default: a 3-node cloud on SQLite, qualified end to end."""
    out = Path(DEFAULT_STATE_DIR) / "reports"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    json_file, html_file = out / f"qualify-{stamp}.json", out / f"qualify-{stamp}.html"
    from spanwire.qualify.run import QualifyOptions

    ledger = Ledger(connect(ledger_store_url(None)))
    opts = QualifyOptions(nodes=3, suites=SUITES,
                          state_dir=os.path.join(DEFAULT_STATE_DIR, "qualify"))
    passed = _run_once(opts, ledger, json_file, html_file)
    console.print(json.dumps({"passed": passed, "report": str(html_file)}))
    raise typer.Exit(0 if passed else 1)


def register(app: typer.Typer) -> None:
    app.command("qualify")(friendly(qualify_cmd))
    app.command("demo")(friendly(demo_cmd))
