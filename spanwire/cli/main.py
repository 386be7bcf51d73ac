"""Entry point: one Typer app; each component registers its own commands.

Each command group lives in its own module next to this one, so a reader who
looks for `spanwire agent` finds `cli/agent.py`.
"""

from __future__ import annotations

import typer

from spanwire import __version__

app = typer.Typer(
    name="spanwire",
    help="Distributed, routed network virtualization for multi-provider OpenStack clouds.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print spanwire's version."""
    typer.echo(__version__)


def _register() -> None:
    # One line per command module; each module exposes `register(app)`.
    from spanwire.cli import store as store_cli

    store_cli.register(app)
    from spanwire.cli import serve as serve_cli

    serve_cli.register(app)
    from spanwire.cli import snapshot as snapshot_cli

    snapshot_cli.register(app)
    from spanwire.cli import qualify as qualify_cli

    qualify_cli.register(app)
    from spanwire.cli import agent as agent_cli

    agent_cli.register(app)
    from spanwire.cli import testbed as testbed_cli

    testbed_cli.register(app)


_register()

if __name__ == "__main__":
    app()
