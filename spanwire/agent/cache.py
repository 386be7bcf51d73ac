"""The agent's copy of the model objects it needs, kept current by store watches.

One watch on the store's root feeds one queue with the changes of the kinds
kept here (nodes, networks, subnets, ports, routers, floating IPs, security
groups and their rules). A watch that fails (store down, history compacted)
surfaces as an exception on the queue; the runner then keeps the kernel as it
is and re-lists when the store is back.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from spanwire.agent import naming, security
from spanwire.model import (
    KINDS,
    FloatingIP,
    Network,
    Node,
    Port,
    Resource,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)
from spanwire.model.router import DEVICE_OWNER_GATEWAY, DEVICE_OWNER_INTERFACE
from spanwire.store import Event, EventType, Store
from spanwire.store import keys as store_keys

log = logging.getLogger("spanwire.agent.cache")
ROUTER_OWNERS = (DEVICE_OWNER_INTERFACE, DEVICE_OWNER_GATEWAY)

WATCHED: tuple[type[Resource], ...] = (Node, Network, Subnet, Port, Router, FloatingIP,
                                       SecurityGroup, SecurityGroupRule)


class ModelCache:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {cls.KIND: {} for cls in WATCHED}
        self.revisions: dict[str, int] = {}
        self.events: queue.Queue[Event | BaseException] = queue.Queue()
        self._watchers: list[threading.Thread] = []
        self._stop = threading.Event()
        self._membership = security.Membership()
        self._rules_by_group: dict[str, tuple[SecurityGroupRule, ...]] | None = None

    def load(self, store: Store) -> None:
        """Replace the cache with a fresh listing of every watched kind."""
        for cls in WATCHED:
            listing = store.range(cls.prefix())
            objs = {}
            for kv in listing.items:
                obj = _parse(cls, kv.value, kv.key)
                if obj is not None:
                    objs[obj.id] = obj
            self.objects[cls.KIND] = objs
            self.revisions[cls.KIND] = listing.revision
        self._membership = security.Membership(self.ports)
        self._rules_by_group = None

    def start_watches(self, store: Store) -> None:
        """One watch on everything under the store's root, from the oldest listing on.

        One, not one per kind: every commit (a port, a status, another agent's
        gateway claim) woke eight watches in each agent, eight threads and eight
        store reads, on a machine whose CPU the data plane shares. What a kind's
        listing already holds, and kinds the agent does not keep, are dropped
        in the watch's thread.
        """
        self.stop_watches()
        self._stop = threading.Event()
        self.events = queue.Queue()
        thread = threading.Thread(target=self._watch,
                                  args=(store, dict(self.revisions), self._stop, self.events),
                                  name="watch", daemon=True)
        thread.start()
        self._watchers.append(thread)

    def stop_watches(self) -> None:
        self._stop.set()
        for thread in self._watchers:
            thread.join(timeout=3)
        self._watchers = []

    @staticmethod
    def _watch(store: Store, listed: dict[str, int], stop: threading.Event,
               out: queue.Queue[Event | BaseException]) -> None:
        try:
            with store.watch(store_keys.ROOT, min(listed.values(), default=0) + 1) as watch:
                while not stop.is_set():
                    event = watch.get(timeout=0.5)
                    if event is not None and _news(event, listed):
                        out.put(event)
        except Exception as exc:  # noqa: BLE001 - handed to the runner
            out.put(exc)

    def apply(self, event: Event) -> set[str] | None:
        """Fold one event into the cache.

        Returns the ids of the networks whose kernel state may have changed
        (empty: nothing changed), or None when every network may be affected
        (a node changed: its address is in every peer's FDB).
        """
        split = self.apply_split(event)
        return None if split is None else split[0] | split[1]

    def apply_split(self, event: Event, stored: Callable[[Port], None] | None = None
                    ) -> tuple[set[str], set[str]] | None:
        """`apply`, with the networks split in two: those the object itself is in, and
        those it touches only through security-group membership (a new port's
        address joins remote-group sets in every namespace with a member of its
        groups). The runner plans the first right away (a port coming up waits on
        it) and the second just after.

        `stored` is called with a port as soon as the cache holds it, before the
        networks it touches are worked out (a walk over every port): the runner
        starts moving the port's tap from there.
        """
        kind, obj_id = store_keys.split(event.key)[:2]
        objs = self.objects.get(kind)
        if objs is None:
            return set(), set()
        old = objs.get(obj_id)
        if event.type == EventType.DELETE:
            if objs.pop(obj_id, None) is None:
                return set(), set()
            new = None
        else:
            new = _parse(KINDS[kind], event.value, event.key)
            if new is None or old == new:
                return set(), set()
            objs[obj_id] = new
            if stored is not None and kind == Port.KIND:
                stored(new)
        if kind == Port.KIND:
            self._membership.update(obj_id, new)
        elif kind == SecurityGroupRule.KIND:
            self._rules_by_group = None
        if kind in (Node.KIND, Router.KIND, FloatingIP.KIND):
            # A node's address is in every peer's FDB; a router's gateway and a
            # floating IP live in router namespaces, planned by full passes.
            return None
        if kind == Network.KIND:
            return {obj_id}, set()
        if kind == SecurityGroup.KIND:
            return set(), set()  # rules and ports carry everything the kernel needs
        if kind == SecurityGroupRule.KIND:
            touched = security.networks_touched_by_rule((old, new), self.ports)
            log.info("event=rule_changed rule=%s group=%s networks=%s", obj_id,
                     (new or old).security_group_id, ",".join(sorted(touched)) or "-")
            return touched, set()
        if kind == Port.KIND and any(
                o is not None and o.device_owner in ROUTER_OWNERS for o in (old, new)):
            return None  # a router gained or lost an interface or address: replan routers
        own = {o.network_id for o in (old, new) if o is not None}
        others: set[str] = set()
        if kind == Port.KIND:
            others = security.networks_touched_by_port(old, new, self.rules, self.ports) - own
        return own, others

    def port_of_tap(self, tap: str) -> Port | None:
        for port in self.objects[Port.KIND].values():
            if naming.tap(port.id) == tap:
                return port  # type: ignore[no-any-return]
        return None

    @property
    def nodes(self) -> dict[str, Node]:
        return self.objects[Node.KIND]

    @property
    def networks(self) -> dict[str, Network]:
        return self.objects[Network.KIND]

    @property
    def subnets(self) -> list[Subnet]:
        return list(self.objects[Subnet.KIND].values())

    @property
    def ports(self) -> list[Port]:
        return list(self.objects[Port.KIND].values())

    @property
    def routers(self) -> dict[str, Router]:
        return self.objects[Router.KIND]

    @property
    def floating_ips(self) -> list[FloatingIP]:
        return list(self.objects[FloatingIP.KIND].values())

    @property
    def rules(self) -> list[SecurityGroupRule]:
        return list(self.objects[SecurityGroupRule.KIND].values())

    def security_view(self) -> security.Security:
        """Compiler inputs for the whole cloud (rules by group, group members), kept
        current by `apply` rather than gathered from every port on every pass."""
        if self._rules_by_group is None:
            self._rules_by_group = security.rules_by_group(self.rules)
        return security.Security(rules=self._rules_by_group, members=self._membership)


def _news(event: Event, listed: dict[str, int]) -> bool:
    """Whether `event` is of a kind the cache keeps and newer than that kind's listing."""
    kind = store_keys.split(event.key)[0]
    return kind in listed and event.revision > listed[kind]


def _parse(cls: type[Resource], raw: bytes, key: str) -> Any:
    try:
        return cls.from_bytes(raw)
    except Exception as exc:  # noqa: BLE001 - one bad object must not stop the node
        log.error("event=bad_object key=%s error=%s", key, exc)
        return None
