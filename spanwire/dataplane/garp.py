"""Gratuitous ARP: tell a provider network that an address now lives behind this MAC.

Sent when a floating IP or a node's SNAT address appears on a router's
gateway device, so the outside's neighbour caches follow a floating IP that
moved to another node at once instead of after their entries go stale. The
frame is an ARP request for the address itself (sender = target), which every
Linux neighbour cache accepts as an update; it is sent from a thread that has
entered the router namespace (`netns.run_in`), through a packet socket bound
to that device, so nothing is ever sent on a host interface.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

from spanwire.dataplane import netns

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def frame(mac: str, ip: str) -> bytes:
    """One broadcast ARP request announcing `ip` at `mac`. Pure."""
    hw = bytes.fromhex(mac.replace(":", ""))
    if len(hw) != 6:
        raise ValueError(f"not a MAC address: {mac}")
    addr = ipaddress.IPv4Address(ip).packed
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, hw, addr, b"\0" * 6, addr)
    return BROADCAST + hw + struct.pack("!H", ETH_P_ARP) + arp


def announce(ns: str, dev: str, ip: str, count: int = 2) -> None:
    """Send `count` gratuitous ARPs for `ip` from `dev` in namespace `ns`."""

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as sock:
            sock.bind((dev, ETH_P_ARP))
            mac = sock.getsockname()[4].hex(":")
            data = frame(mac, ip)
            for _ in range(count):
                sock.send(data)

    netns.run_in(ns, send)
