"""Netlink link events of one namespace, delivered to a callback from a thread.

The agent watches its node namespace so a tap the hypervisor just created is
plugged at once, instead of at the next periodic resync. The socket is made
and read in the same thread (pyroute2's sync API is bound to its thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pyroute2 import IPRoute

from spanwire.dataplane import netns

log = logging.getLogger("spanwire.dataplane.monitor")
RTMGRP_LINK = 0x1


class LinkMonitor:
    def __init__(self, ns: str, on_change: Callable[[str, str], None]) -> None:
        self.ns = ns
        self.on_change = on_change
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.running = False  # bound and reading: its events can be trusted
        self._thread = threading.Thread(target=self._run, name=f"linkmon-{ns}", daemon=True)

    def start(self) -> LinkMonitor:
        self._thread.start()
        self._ready.wait(timeout=10)
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            sock = IPRoute(netns=self.ns, groups=RTMGRP_LINK)
            mine = netns.socket_inode(sock.fileno())
            if mine != netns.inode(self.ns) or mine == netns.host_inode():
                raise netns.WrongNamespace(f"monitor socket is not in {self.ns}")
            sock.bind()
        except Exception as exc:  # noqa: BLE001 - the agent still resyncs periodically
            log.error("event=link_monitor_failed ns=%s error=%s", self.ns, exc)
            self._ready.set()
            return
        self.running = True
        self._ready.set()
        try:
            while not self._stop.is_set():
                for msg in sock.get():
                    name = msg.get_attr("IFLA_IFNAME") or ""
                    self.on_change(msg["event"], name)
        except Exception as exc:  # noqa: BLE001
            if not self._stop.is_set():
                log.error("event=link_monitor_stopped ns=%s error=%s", self.ns, exc)
        finally:
            self.running = False
            sock.close()
