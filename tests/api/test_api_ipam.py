"""IPAM, pure: defaults, validation, and (hypothesis) never the same address twice."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spanwire.api import ipam
from spanwire.errors import InvalidInput


def test_defaults_follow_neutron() -> None:
    net = ipam.parse_cidr("10.0.0.0/24")
    assert ipam.default_gateway(net) == "10.0.0.1"
    pools = ipam.default_pools(net, "10.0.0.1")
    assert [(str(ipaddress.IPv4Address(s)), str(ipaddress.IPv4Address(e))) for s, e in pools] == [
        ("10.0.0.2", "10.0.0.254")
    ]
    middle = ipam.default_pools(net, "10.0.0.100")
    assert len(middle) == 2 and ipam.pool_size(middle) == 253
    assert ipam.pool_size(ipam.default_pools(net, None)) == 254


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "10.0.0.1/24", "fe80::/64", "x", "10.0.0.0/31"])
def test_bad_cidrs(bad: str) -> None:
    with pytest.raises(InvalidInput):
        ipam.parse_cidr(bad)


def test_pool_checks() -> None:
    net = ipam.parse_cidr("10.0.0.0/24")
    lo = int(ipaddress.IPv4Address("10.0.0.10"))
    with pytest.raises(InvalidInput):  # outside the subnet
        ipam.check_pools(net, [(lo, lo + 1000)], None)
    with pytest.raises(InvalidInput):  # overlapping pools
        ipam.check_pools(net, [(lo, lo + 10), (lo + 5, lo + 20)], None)
    with pytest.raises(InvalidInput):  # gateway inside a pool
        ipam.check_pools(net, [(lo, lo + 10)], "10.0.0.12")
    ipam.check_pools(net, [(lo, lo + 10)], "10.0.0.1")
    assert ipam.overlaps("10.0.0.0/25", ["192.168.0.0/16", "10.0.0.0/24"]) == "10.0.0.0/24"
    assert ipam.overlaps("10.0.1.0/24", ["10.0.0.0/24"]) is None


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.integers(min_value=22, max_value=30),
    seed=st.integers(0, 2**32),
    pre_used=st.sets(st.integers(min_value=0, max_value=1023), max_size=64),
)
def test_pick_never_hands_out_an_address_twice(prefix: int, seed: int, pre_used: set[int]) -> None:
    net = ipaddress.IPv4Network(f"10.9.0.0/{prefix}")
    pools = ipam.default_pools(net, ipam.default_gateway(net))
    size = ipam.pool_size(pools)
    base = int(net.network_address)
    used = {str(ipaddress.IPv4Address(base + 2 + u)) for u in pre_used if u < size}
    rng = random.Random(seed)
    handed: set[str] = set()
    while True:
        ip = ipam.pick(pools, used, rng)
        if ip is None:
            break
        assert ip not in used and ip not in handed
        assert ipam.in_subnet(net, ip) and ip != ipam.default_gateway(net)
        handed.add(ip)
        used.add(ip)
    # Every free address was eventually handed out: nothing is lost either.
    assert len(used) == size


@settings(max_examples=30, deadline=None)
@given(lo=st.integers(1, 100), span=st.integers(0, 50), seed=st.integers(0, 2**32))
def test_pick_numbers_for_vnis_and_slots(lo: int, span: int, seed: int) -> None:
    rng = random.Random(seed)
    used: set[str] = set()
    for _ in range(span + 1):
        name = ipam.pick([(lo, lo + span)], used, rng, fmt=str)
        assert name is not None and lo <= int(name) <= lo + span and name not in used
        used.add(name)
    assert ipam.pick([(lo, lo + span)], used, rng, fmt=str) is None


@settings(max_examples=40, deadline=None)
@given(
    prefix=st.integers(min_value=24, max_value=30),
    starts=st.lists(st.integers(0, 10_000), min_size=1, max_size=300),
    pre_used=st.sets(st.integers(min_value=0, max_value=255), max_size=32),
)
def test_cursor_picks_never_repeat_and_exhaust_the_pool(
    prefix: int, starts: list[int], pre_used: set[int]
) -> None:
    net = ipaddress.IPv4Network(f"10.9.0.0/{prefix}")
    pools = ipam.default_pools(net, ipam.default_gateway(net))
    size = ipam.pool_size(pools)
    base = int(net.network_address)
    used = {str(ipaddress.IPv4Address(base + 2 + u)) for u in pre_used if u < size}
    handed: set[str] = set()
    for start in starts * 2:  # arbitrary cursors, as replicas jumping after lost races
        hit = ipam.pick_from(pools, used, start % size)
        if hit is None:
            break
        ip, index = hit
        assert ip not in used and ip not in handed and 0 <= index < size
        assert ipam.in_subnet(net, ip) and ip != ipam.default_gateway(net)
        handed.add(ip)
        used.add(ip)
    if len(starts) * 2 >= size:
        assert len(used) == size
