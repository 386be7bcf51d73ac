"""`python -m spanwire.agent --store URL --node NAME`: the agent without the whole CLI.

The same options as `spanwire agent`, parsed with argparse instead of Typer:
Typer, Click and Rich cost about a tenth of a second to import, and a
restarted agent is judged by how soon it has converged (issue 4: one second
with a thousand ports).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

# No cyclic garbage collection until the first pass is done (`Agent._session`
# turns it back on): start-up makes hundreds of thousands of objects, none of
# them garbage, and the collector would walk them again and again.
gc.disable()

# pydantic looks for plugins by scanning every installed distribution's entry
# points the first time a model is built (about 50 ms); spanwire uses none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spanwire.agent",
        description="Watch the store and keep this node's kernel equal to the desired state.")
    parser.add_argument("--store", required=True, help="Store URL (sqlite:///path or etcd://h:p).")
    parser.add_argument("--node", required=True, help="This node's name (a registered Node).")
    parser.add_argument("--run-dir", default="",
                        help="Where dnsmasq files live (default /run/spanwire/NODE).")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING.")
    parser.add_argument("--resync", type=float, default=30.0, help="Full resync period, seconds.")
    args = parser.parse_args(argv)
    from spanwire.agent.service import serve
    from spanwire.errors import SpanwireError

    try:
        serve(args.store, args.node, args.run_dir, args.log_level, args.resync)
    except SpanwireError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
