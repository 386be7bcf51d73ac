"""`python -m spanwire.agent --store URL --node NAME`: the agent without the whole CLI.

Same command as `spanwire agent`, but imports only what the agent needs, so
a (re)started agent is converging in well under a second of process start.
"""

from __future__ import annotations

import typer

from spanwire.cli import agent as agent_cli

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
agent_cli.register(app)

if __name__ == "__main__":
    app()
