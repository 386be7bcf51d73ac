"""`spanwire store ...`: look at the state store an installation runs on.

Operators reach for these when an agent or api replica misbehaves: is the store
reachable and healthy, what is stored under a prefix, what is changing now.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from spanwire.cli.errors import friendly
from spanwire.store import DEFAULT_URL, Store, connect

console = Console()

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="SPANWIRE_STORE",
        help="Store URL: sqlite:///path/state.db or etcd://host:port[,host:port...]; "
        "default from $SPANWIRE_STORE.",
        show_default=True,
    ),
]


def preview(value: bytes, limit: int = 60) -> str:
    """Printable text for a value: UTF-8 as is, binary as a byte count and hex head."""
    try:
        text = value.decode("utf-8")
        if text.isprintable() or not text:
            return text if len(text) <= limit else text[: limit - 1] + "…"
    except UnicodeDecodeError:
        pass
    return f"<{len(value)} bytes> {value[:16].hex()}"


def _status_table(store: Store) -> Table:
    facts = store.status() if hasattr(store, "status") else {"revision": store.revision()}
    table = Table(title=f"store {escape(store.url)}", show_header=False)
    table.add_column("fact", style="bold")
    table.add_column("value")
    members = facts.pop("members", None)
    for name, value in facts.items():
        table.add_row(name, escape(str(value)))
    if isinstance(members, dict):
        for endpoint, info in members.items():
            if info.get("healthy"):
                role = "leader" if info.get("leader") else "follower"
                state = (
                    f"[green]healthy[/] {role}, etcd {escape(str(info.get('version')))}, "
                    f"rev {info.get('revision')}, db {info.get('db_size', 0) // 1024} KiB"
                )
            else:
                state = f"[red]unhealthy[/] {escape(str(info.get('error', 'no leader')))}"
            table.add_row(f"member {escape(endpoint)}", state)
    return table


def register(app: typer.Typer) -> None:
    """Add the `store` command group to the main app."""
    group = typer.Typer(
        help="Inspect the state store (SQLite file or etcd cluster).", no_args_is_help=True
    )

    @group.command()
    @friendly
    def status(store_url: StoreOption = DEFAULT_URL) -> None:
        """Revision, backend, and (for etcd) the health of every member."""
        with connect(store_url) as store:
            console.print(_status_table(store))

    @group.command("ls")
    @friendly
    def list_keys(
        prefix: Annotated[str, typer.Argument(help="Key prefix, e.g. /spanwire/v1/ports/")] = "",
        store_url: StoreOption = DEFAULT_URL,
    ) -> None:
        """List keys under PREFIX with their revisions, as of one revision."""
        with connect(store_url) as store:
            listing = store.range(prefix)
        table = Table(
            title=f"{len(listing.items)} keys under {escape(prefix or '/')} "
            f"at revision {listing.revision}"
        )
        for column in ("key", "value", "mod rev", "version", "lease"):
            table.add_column(
                column, justify="right" if column != "key" and column != "value" else "left"
            )
        for kv in listing.items:
            table.add_row(
                escape(kv.key),
                escape(preview(kv.value)),
                str(kv.mod_revision),
                str(kv.version),
                f"{kv.lease:x}" if kv.lease else "",
            )
        console.print(table)

    @group.command()
    @friendly
    def watch(
        prefix: Annotated[str, typer.Argument(help="Key prefix to follow.")] = "",
        store_url: StoreOption = DEFAULT_URL,
        from_revision: Annotated[
            int, typer.Option("--from", help="Start at this revision (default: now).")
        ] = 0,
    ) -> None:
        """Print changes under PREFIX as they happen, until Ctrl-C."""
        with connect(store_url) as store:
            start = from_revision or store.revision() + 1
            console.print(f"[dim]watching {escape(prefix or '/')} from revision {start}[/]")
            with store.watch(prefix, start) as events:
                try:
                    for event in events:
                        colour = "green" if event.type.value == "put" else "red"
                        console.print(
                            f"{event.revision:>8} [{colour}]{event.type.value.upper():<6}[/] "
                            f"{escape(event.key)} {escape(preview(event.value))}"
                        )
                except KeyboardInterrupt:
                    pass

    app.add_typer(group, name="store")
