"""The agent's one watch on the store root delivers exactly the changes its listings lack.

One watch replaced one per kind; it starts at the oldest listing, so it must
drop what a kind's own listing already holds and every kind the cache does
not keep (agents' status and liveness keys), or a pass would run for nothing.
"""

from __future__ import annotations

import queue
from pathlib import Path

from spanwire.agent import cache as cache_module
from spanwire.agent.cache import ModelCache
from spanwire.model import Network, Node, Port, PortStatus
from spanwire.store import Event, EventType, connect


def _drain(events: queue.Queue[object], settle: float = 1.0) -> list[Event]:
    out: list[Event] = []
    while True:
        try:
            item = events.get(timeout=settle)
        except queue.Empty:
            return out
        assert isinstance(item, Event), item
        out.append(item)


def test_the_root_watch_delivers_new_changes_of_kept_kinds_only(tmp_path: Path) -> None:
    store = connect(f"sqlite://{tmp_path}/store.db")
    cache = ModelCache()
    try:
        node = Node(id="node1", underlay_ip="10.255.0.1", netns="swcw-node1")
        net = Network(id="11111111-cccc-4aaa-8aaa-000000000001", project_id="p",
                      segmentation_id=300)
        store.put(node.key, node.to_bytes())
        store.put(net.key, net.to_bytes())
        cache.load(store)
        assert set(cache.networks) == {net.id}
        port = Port(id="22222222-cccc-4aaa-8aaa-000000000001", project_id="p",
                    network_id=net.id, mac_address="fa:16:3e:00:00:01", binding_host_id="node1")
        store.put(port.key, port.to_bytes())  # after the listing: news
        status = PortStatus(id=port.id, node="node1", status="ACTIVE")
        store.put(status.key, status.to_bytes())  # not a kind the cache keeps
        cache.start_watches(store)
        renamed = net.evolve(name="renamed")
        store.put(renamed.key, renamed.to_bytes())
        got = _drain(cache.events)
        assert [e.key for e in got] == [port.key, renamed.key]
    finally:
        cache.stop_watches()
        store.close()


def test_a_kind_listed_later_skips_what_its_listing_held() -> None:
    listed = {"ports": 7, "networks": 3}
    port_key, net_key = Port.key_of("p1"), Network.key_of("n1")
    assert not cache_module._news(Event(EventType.PUT, port_key, b"", 5), listed)
    assert not cache_module._news(Event(EventType.PUT, port_key, b"", 7), listed)
    assert cache_module._news(Event(EventType.PUT, port_key, b"", 8), listed)
    assert cache_module._news(Event(EventType.PUT, net_key, b"", 5), listed)
    assert not cache_module._news(Event(EventType.PUT, PortStatus.key_of("p1"), b"", 9), listed)
