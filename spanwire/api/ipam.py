"""Pure IPv4 address management: subnet defaults, validation and address picking.

No store access here; `allocation.py` turns a pick into a reservation key
created with Compare.absent in the same transaction as the port, which is what
makes an address impossible to hand out twice. Picking is random (few
collisions between replicas that do not see each other's latest picks) with
a linear fallback (a nearly full pool still finds its last free address).
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Callable, Collection, Sequence

from spanwire.errors import InvalidInput

Range = tuple[int, int]  # inclusive integer bounds
RANDOM_PROBES = 24


def parse_cidr(text: object) -> ipaddress.IPv4Network:
    if not isinstance(text, str):
        raise InvalidInput("cidr must be a string like 10.0.0.0/24")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidInput(
            f"Invalid input for cidr. Reason: '{text}' is not a valid IP subnet."
        ) from None
    if net.version != 4:
        raise InvalidInput(f"{text}: only IPv4 subnets are supported")
    if str(net) != text.strip():
        raise InvalidInput(
            f"Invalid input for cidr. Reason: '{text}' isn't a recognized IP subnet "
            f"cidr, '{net}' is recommended."
        )
    if net.prefixlen > 30:
        raise InvalidInput(f"{text} leaves no room for addresses; use a prefix of /30 or shorter")
    return net


def parse_ip(text: object, what: str = "ip_address") -> ipaddress.IPv4Address:
    try:
        if not isinstance(text, str):
            raise ValueError
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidInput(
            f"Invalid input for {what}. Reason: '{text}' is not a valid IPv4 address."
        ) from None


def default_gateway(net: ipaddress.IPv4Network) -> str:
    return str(net.network_address + 1)


def usable(net: ipaddress.IPv4Network) -> Range:
    return int(net.network_address) + 1, int(net.broadcast_address) - 1


def default_pools(net: ipaddress.IPv4Network, gateway: str | None) -> list[Range]:
    """Every usable address except the gateway, as Neutron does."""
    lo, hi = usable(net)
    if gateway is None:
        return [(lo, hi)]
    gw = int(ipaddress.IPv4Address(gateway))
    return [r for r in ((lo, gw - 1), (gw + 1, hi)) if r[0] <= r[1]]


def check_pools(net: ipaddress.IPv4Network, pools: Sequence[Range], gateway: str | None) -> None:
    lo, hi = usable(net)
    ordered = sorted(pools)
    for start, end in ordered:
        if start > end:
            raise InvalidInput(f"allocation pool {_ip(start)}-{_ip(end)}: start is after end")
        if start < lo or end > hi:
            raise InvalidInput(
                f"The allocation pool {_ip(start)}-{_ip(end)} spans beyond the subnet cidr {net}."
            )
    for (_, end), (start, _) in itertools.pairwise(ordered):
        if start <= end:
            raise InvalidInput("Found overlapping allocation pools")
    if gateway is not None:
        gw = int(ipaddress.IPv4Address(gateway))
        if any(s <= gw <= e for s, e in ordered):
            raise InvalidInput(f"Gateway ip {gateway} conflicts with allocation pool")


def check_gateway(net: ipaddress.IPv4Network, gateway: str) -> str:
    gw = parse_ip(gateway, "gateway_ip")
    lo, hi = usable(net)
    if not lo <= int(gw) <= hi:
        raise InvalidInput(f"Gateway IP {gw} is not a usable address of subnet {net}")
    return str(gw)


def in_subnet(net: ipaddress.IPv4Network, address: str) -> bool:
    lo, hi = usable(net)
    return lo <= int(ipaddress.IPv4Address(address)) <= hi


def overlaps(cidr: str, others: Collection[str]) -> str | None:
    """The first of `others` that overlaps `cidr`, if any."""
    net = ipaddress.IPv4Network(cidr)
    return next((o for o in others if net.overlaps(ipaddress.IPv4Network(o))), None)


def pool_size(pools: Sequence[Range]) -> int:
    return sum(e - s + 1 for s, e in pools)


def _nth(pools: Sequence[Range], index: int) -> int:
    for start, end in pools:
        if index <= end - start:
            return start + index
        index -= end - start + 1
    raise IndexError(index)


def _ip(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def pick(
    pools: Sequence[Range],
    used: Collection[str],
    rng: random.Random | None = None,
    fmt: Callable[[int], str] | None = None,
) -> str | None:
    """A free member of `pools` not in `used` (as `fmt` renders it), or None if all are used.

    Addresses by default; VNIs and quota slots use the same picker with `fmt=str`.
    """
    fmt = fmt or _ip
    size = pool_size(pools)
    if size <= 0:
        return None
    rng = rng or random
    for _ in range(RANDOM_PROBES if len(used) < size else 0):
        candidate = fmt(_nth(pools, rng.randrange(size)))
        if candidate not in used:
            return candidate
    offset = rng.randrange(size)
    for step in range(size):
        candidate = fmt(_nth(pools, (offset + step) % size))
        if candidate not in used:
            return candidate
    return None


def pick_from(
    pools: Sequence[Range],
    used: Collection[str],
    start: int,
    fmt: Callable[[int], str] | None = None,
) -> tuple[str, int] | None:
    """The first free member at or after pool index `start` (wrapping), with its index.

    Replicas keep a cursor each, starting at a random index: they then fill
    different parts of a pool and rarely pick an address the other just took
    (which their caches cannot know), unlike uniform random picks that collide
    more and more as the pool fills.
    """
    fmt = fmt or _ip
    size = pool_size(pools)
    for step in range(size):
        index = (start + step) % size
        candidate = fmt(_nth(pools, index))
        if candidate not in used:
            return candidate, index
    return None
