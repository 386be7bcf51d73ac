"""Run one node agent in the foreground until SIGTERM/SIGINT: what both entry points do.

`spanwire agent` (the Typer CLI) and `python -m spanwire.agent` (the slim entry
that supervisors and the testbed start) share this, so they cannot drift apart.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

# How long a thread may keep the GIL while another waits for it (Python's default: 5 ms).
# The tap mover and the nft thread wait in the kernel and then need the GIL back for a
# moment, many times per operation (pyroute2 is asyncio inside); against a reconcile
# thread planning a thousand ports, 5 ms per handoff made a 17 ms tap move take 40.
SWITCH_INTERVAL = 0.0005

LOG_FORMAT = "ts=%(asctime)s level=%(levelname)s component=%(name)s %(message)s"


def serve(store: str, node: str, run_dir: str = "", log_level: str = "INFO",
          resync: float = 30.0) -> None:
    from spanwire.agent.runner import Agent  # after argument errors

    logging.basicConfig(level=log_level.upper(), format=LOG_FORMAT)
    sys.setswitchinterval(SWITCH_INTERVAL)
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
