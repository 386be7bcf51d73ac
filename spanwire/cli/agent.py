"""`spanwire agent`: the node agent (one per node)."""

from __future__ import annotations

import logging
import signal
import threading

import typer

from spanwire.cli.errors import friendly

LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s component=%(name)s %(message)s"


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
        from spanwire.agent.runner import Agent

        logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
        stop = threading.Event()
        runner = Agent(store, node, run_dir or f"/run/spanwire/{node}", resync_interval=resync)

        def on_signal(signum: int, _frame: object) -> None:
            logging.getLogger("spanwire.agent").info("event=stopping node=%s signal=%d",
                                                     node, signum)
            stop.set()
            runner.wake()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        runner.run(stop)
