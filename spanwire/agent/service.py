"""Run one node agent in the foreground until SIGTERM/SIGINT: what both entry points do.

`spanwire agent` (the Typer CLI) and `python -m spanwire.agent` (the slim entry
that supervisors and the testbed start) share this, so they cannot drift apart.
"""

from __future__ import annotations

import logging
import signal
import threading

LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s component=%(name)s %(message)s"


def serve(store: str, node: str, run_dir: str = "", log_level: str = "INFO",
          resync: float = 30.0) -> None:
    from spanwire.agent.runner import Agent  # after argument errors

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
