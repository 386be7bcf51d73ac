"""Netlink link events of one namespace, delivered to a callback from a thread.

The agent watches its node namespace so a tap the hypervisor just created is
plugged at once, instead of at the next periodic resync. The socket is a plain
NETLINK_ROUTE socket subscribed to the link group, made inside the namespace
(and proved to be there) and read in its own thread. It decodes only what
the agent needs (event and interface name), so the agent does not import
pyroute2 (a quarter of a second) just to start listening: a warm restart
that changes nothing never loads it.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterator

from spanwire.dataplane import netns

log = logging.getLogger("spanwire.dataplane.monitor")
RTMGRP_LINK = 0x1
RTM_NEWLINK, RTM_DELLINK = 16, 17
EVENTS = {RTM_NEWLINK: "RTM_NEWLINK", RTM_DELLINK: "RTM_DELLINK"}
OVERFLOW = "OVERFLOW"  # the kernel dropped events: whatever was derived from them is stale
IFLA_IFNAME = 3
_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTATTR = struct.Struct("=HH")  # len, type
RCVBUF = 4 << 20


def _align(n: int) -> int:
    return (n + 3) & ~3


def link_events(data: bytes) -> Iterator[tuple[str, str]]:
    """(event, interface name) of every RTM_NEWLINK/RTM_DELLINK message in one datagram."""
    pos = 0
    while pos + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, pos)
        if length < _NLMSGHDR.size or pos + length > len(data):
            return  # truncated or malformed: nothing more to trust in this datagram
        event = EVENTS.get(kind)
        if event is not None:
            name = ""
            attr = pos + _NLMSGHDR.size + _IFINFOMSG.size
            end = pos + length
            while attr + _RTATTR.size <= end:
                alen, atype = _RTATTR.unpack_from(data, attr)
                if alen < _RTATTR.size:
                    break
                if atype == IFLA_IFNAME:
                    raw = data[attr + _RTATTR.size:attr + alen]
                    name = raw.split(b"\0", 1)[0].decode(errors="replace")
                    break
                attr += _align(alen)
            yield event, name
        pos += _align(length)


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

    def _open(self) -> socket.socket:
        def body() -> socket.socket:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
                sock.bind((0, RTMGRP_LINK))
            except OSError:
                sock.close()
                raise
            return sock

        sock = netns.run_in(self.ns, body)  # a socket stays in the namespace it was made in
        mine = netns.socket_inode(sock.fileno())
        if mine != netns.inode(self.ns) or mine == netns.host_inode():
            sock.close()
            raise netns.WrongNamespace(f"monitor socket is not in {self.ns}")
        sock.settimeout(0.5)  # look at the stop flag twice a second
        return sock

    def _run(self) -> None:
        try:
            sock = self._open()
        except Exception as exc:  # noqa: BLE001 - the agent still resyncs periodically
            log.error("event=link_monitor_failed ns=%s error=%s", self.ns, exc)
            self._ready.set()
            return
        self.running = True
        self._ready.set()
        try:
            while not self._stop.is_set():
                try:
                    data = sock.recv(1 << 16)
                except TimeoutError:
                    continue
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    log.warning("event=link_monitor_overflow ns=%s", self.ns)
                    self.on_change(OVERFLOW, "")
                    continue
                for event, name in link_events(data):
                    self.on_change(event, name)
        except Exception as exc:  # noqa: BLE001
            if not self._stop.is_set():
                log.error("event=link_monitor_stopped ns=%s error=%s", self.ns, exc)
        finally:
            self.running = False
            sock.close()
