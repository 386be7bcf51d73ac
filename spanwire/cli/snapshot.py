"""`spanwire snapshot list|show|diff|promote|reject`: the known-good ledger."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from spanwire.cli.errors import friendly
from spanwire.cli.options import StoreOption, ledger_store_url
from spanwire.qualify.ledger import Ledger
from spanwire.qualify.manifest import Manifest, diff
from spanwire.store import connect

console = Console()
snapshot_app = typer.Typer(help="Snapshots of component versions and their qualification state.")

STATE_STYLE = {
    "candidate": "yellow",
    "experimental": "cyan",
    "known-good": "bold green",
    "rejected": "bold red",
}


def _ledger(store: str | None) -> Ledger:
    return Ledger(connect(ledger_store_url(store)))


@snapshot_app.command("list")
@friendly
def list_(store: StoreOption = None, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every snapshot with its state and run counts."""
    ledger = _ledger(store)
    records = sorted(ledger.snapshots(), key=lambda r: r.first_seen)
    good = ledger.known_good()
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in records], indent=2))
        return
    table = Table(title="snapshots")
    for col in ("id", "state", "passed", "failed", "first seen", "note"):
        table.add_column(col)
    for r in records:
        mark = " ★" if r.id == good else ""
        table.add_row(
            r.id + mark,
            f"[{STATE_STYLE[r.state.value]}]{r.state.value}[/]",
            str(r.runs_passed),
            str(r.runs_failed),
            r.first_seen,
            r.reason,
        )
    console.print(table)


@snapshot_app.command()
@friendly
def show(snapshot_id: str, store: StoreOption = None) -> None:
    """One snapshot's manifest, standing and runs."""
    ledger = _ledger(store)
    record = ledger.get(snapshot_id)
    table = Table(title=f"snapshot {record.id} — {record.state.value}")
    table.add_column("component")
    table.add_column("version")
    for name, version in sorted(record.manifest["components"].items()):
        table.add_row(name, version)
    for name, value in sorted(record.manifest.get("config", {}).items()):
        table.add_row(f"config:{name}", json.dumps(value))
    console.print(table)
    runs = Table(title="runs")
    for col in ("run", "finished", "result"):
        runs.add_column(col)
    for run in ledger.runs(record.id):
        runs.add_row(run.id, run.finished_at, "[green]pass[/]" if run.passed else "[red]FAIL[/]")
    console.print(runs)


@snapshot_app.command("diff")
@friendly
def diff_(old: str, new: str, store: StoreOption = None) -> None:
    """What differs between two snapshots."""
    ledger = _ledger(store)
    a = Manifest.from_json(ledger.get(old).manifest)
    b = Manifest.from_json(ledger.get(new).manifest)
    table = Table(title=f"{a.id} → {b.id}")
    for col in ("component", old, new):
        table.add_column(col)
    for name, before, after in diff(a, b):
        table.add_row(name, before or "—", after or "—")
    console.print(table)


@snapshot_app.command()
@friendly
def promote(
    snapshot_id: str,
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    store: StoreOption = None,
) -> None:
    """Declare a snapshot known-good now (the previous one is kept for rollback)."""
    record = _ledger(store).promote(snapshot_id, reason)
    console.print(f"{record.id} is now [bold green]known-good[/]")


@snapshot_app.command()
@friendly
def reject(
    snapshot_id: str,
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    store: StoreOption = None,
) -> None:
    """Reject a snapshot so it is never rolled out."""
    record = _ledger(store).reject(snapshot_id, reason)
    console.print(f"{record.id} is now [bold red]rejected[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(snapshot_app, name="snapshot")
