"""`spanwire agent`: the node agent (one per node)."""

from __future__ import annotations

import typer

from spanwire.cli.errors import friendly


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly
    def agent(
        store: str = typer.Option(..., "--store", help="Store URL (sqlite:///path or etcd://h:p)."),
        node: str = typer.Option(..., "--node", help="This node's name (a registered Node)."),
        run_dir: str = typer.Option(
            "", "--run-dir", help="Where dnsmasq files live (default /run/spanwire/NODE)."
        ),
        log_level: str = typer.Option("INFO", "--log-level", help="DEBUG, INFO, WARNING."),
        resync: float = typer.Option(30.0, "--resync", help="Full resync period, seconds."),
    ) -> None:
        """Watch the store and keep this node's kernel equal to the desired state."""
        from spanwire.agent.service import serve

        serve(store, node, run_dir, log_level, resync)
