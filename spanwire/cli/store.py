"""`spanwire store ...` commands (placeholder until the store lands)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `store` command group to the main app."""
    group = typer.Typer(help="Inspect the state store.", no_args_is_help=True)
    app.add_typer(group, name="store")
