"""The agent loop: list, reconcile, watch; report port status and node liveness.

Forwarding never depends on the agent or the store: the kernel keeps the last
applied state. If the store goes away the agent leaves the kernel alone and
retries; when it comes back (or a watch reports `Compacted`) it re-lists
everything and reconciles once, which is a no-op if nothing changed.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field, replace

from spanwire import __version__
from spanwire.agent import actual, desired, effects, naming, north_south, resync, routers
from spanwire.agent.apply import Plugger, apply
from spanwire.agent.cache import ModelCache
from spanwire.agent.plan import plan
from spanwire.agent.plan.ops import MoveTap, Op, StartDhcp
from spanwire.agent.state import NodeKernel, RoutingNs
from spanwire.agent.status import StatusReporter
from spanwire.dataplane import capabilities, dnsmasq
from spanwire.dataplane.kernel import Kernel
from spanwire.dataplane.monitor import OVERFLOW, LinkMonitor
from spanwire.errors import Compacted, Conflict, InvalidInput, NotFound, SpanwireError, Unavailable
from spanwire.model import Node, NodeLiveness, Port
from spanwire.store import Store, connect

log = logging.getLogger("spanwire.agent")

WAKE = object()  # queued to make the loop check its stop flag
FULL_PASS = object()  # queued when tracked state may be stale: read and plan everything


@dataclass(frozen=True)
class LinkChange:
    """Queued by the link monitor: a tap appeared or left the node namespace."""

    name: str


@dataclass
class Stats:
    reconciles: int = 0
    ops: int = 0
    last_ops: int = 0
    last_duration: float = 0.0
    resyncs: int = 0
    errors: int = 0
    started: float = field(default_factory=time.monotonic)
    first_reconcile: float | None = None


class Agent:
    def __init__(self, store_url: str, node_id: str, run_dir: str, lease_ttl: int = 10,
                 resync_interval: float = 30.0) -> None:
        self.store_url = store_url
        self.node_id = node_id
        self.run_dir = run_dir
        self.lease_ttl = lease_ttl
        self.resync_interval = resync_interval
        self.kernel = Kernel()
        self.cache = ModelCache()
        self.stats = Stats()
        self.capabilities: dict[str, bool] = {}
        self._store: Store | None = None
        self._lease = None
        self.status = StatusReporter(node_id)
        self.dirty = False
        # The kernel as of the last pass (read, then advanced by `effects`); None: unknown.
        self.known: NodeKernel | None = None
        # Taps waiting in the node namespace, kept by the link monitor; None: unknown.
        self._loose: set[str] | None = None
        self._loose_lock = threading.Lock()
        self._monitor: LinkMonitor | None = None
        self._later: set[str] = set()  # see `_drain`
        self.plugger = Plugger()
        self._stop = threading.Event()

    # -- lifecycle ---------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        os.makedirs(self.run_dir, mode=0o755, exist_ok=True)
        _check_traversable(self.run_dir)
        backoff = 0.2
        while not stop.is_set():
            try:
                self._session(stop)
                backoff = 0.2
            except capabilities.MissingCapability as exc:
                log.error("event=cannot_run node=%s error=%s", self.node_id, exc)
                raise
            except Compacted as exc:
                log.warning("event=resync node=%s reason=compacted detail=%s", self.node_id, exc)
                self.stats.resyncs += 1
            except (Unavailable, ConnectionError, OSError, TimeoutError) as exc:
                log.warning("event=store_unavailable node=%s error=%s retry_in=%.1fs "
                            "(forwarding continues on last-applied state)",
                            self.node_id, exc, backoff)
                self._drop_store()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            except Exception:  # a daemon logs, backs off and carries on
                log.exception("event=agent_error node=%s retry_in=%.1fs", self.node_id, backoff)
                self._drop_store()
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self.cache.stop_watches()
        if self._monitor is not None:
            self._monitor.stop()
        self._release_lease()
        self._drop_store()
        self.plugger.close()
        self.kernel.close()

    def _session(self, stop: threading.Event) -> None:
        if self._store is None:
            self._store = connect(self.store_url)
        store = self._store
        node = self._wait_node(store, stop)
        if node is None:
            return
        if not self.capabilities:
            self.capabilities = capabilities.cached_probe(
                f"{node.netns}-probe", os.path.join(self.run_dir, "capabilities.json"))
            capabilities.require(self.capabilities)
        if self._monitor is None:
            self._monitor = LinkMonitor(node.netns, self._on_link).start()
        self.cache.load(store)
        self.status.load(store)
        self.reconcile()
        if not gc.isenabled():  # `python -m spanwire.agent` starts with it off (see there)
            # What is alive now (the model, the kernel's state) lives as long as the
            # agent: out of every later collection, so a pass never waits on a full
            # scan of a thousand ports' objects.
            gc.collect()
            gc.freeze()
            gc.enable()
        self.plugger.warm(node.netns)
        self._ensure_lease(store)
        self.cache.start_watches(store)
        last_full = last_event = time.monotonic()
        try:
            self._stop = stop
            while not stop.is_set():
                wait = resync.full_pass_wait(time.monotonic(), last_full, last_event,
                                             self.resync_interval)
                changed = self._drain(1.0 if self.dirty else max(0.05, wait))
                overdue = resync.overdue(time.monotonic(), last_full, self.resync_interval)
                if self.dirty or changed is None or overdue:
                    # Everything: retry, node change, stale tracking, or a periodic pass
                    # that events have put off for a second interval (it covers them too).
                    self._later = set()
                    self.reconcile()
                    last_full = last_event = time.monotonic()
                elif changed or self._later:
                    # Events first: a due periodic pass waits for a quiet spell (`resync`).
                    later, self._later = self._later, set()
                    if changed:
                        self.reconcile(changed)
                    if later:
                        self.reconcile(later)
                    last_event = time.monotonic()  # the quiet spell starts when they are done
                elif resync.full_pass_wait(time.monotonic(), last_full, last_event,
                                           self.resync_interval) <= 0:
                    self.reconcile()  # the periodic resync: finds what changed behind our back
                    last_full = time.monotonic()
                self._ensure_lease(store)
        finally:
            self.cache.stop_watches()

    def _wait_node(self, store: Store, stop: threading.Event) -> Node | None:
        while not stop.is_set():
            kv = store.get(Node.key_of(self.node_id))
            if kv is not None:
                node = Node.from_bytes(kv.value)
                if not node.netns:
                    raise InvalidInput(
                        f"node {self.node_id} has no netns: this agent only manages nodes that "
                        "are network namespaces (the host's own namespace is never touched)"
                    )
                return node
            log.info("event=waiting_for_node node=%s", self.node_id)
            stop.wait(1.0)
        return None

    def wake(self) -> None:
        """Make the loop look at its stop flag now (called from a signal handler)."""
        self.cache.events.put(WAKE)

    def _on_link(self, event: str, name: str) -> None:
        """A tap appeared in (or left) the node namespace: reconcile its network soon.

        The monitor also keeps the set of loose taps current, so an event-driven
        pass needs no listing of the node namespace. If the kernel dropped events,
        that set is stale: it is read from the kernel until the next full pass.
        """
        if event == OVERFLOW:
            with self._loose_lock:
                self._loose = None
            self.cache.events.put(FULL_PASS)
            return
        if not name.startswith("tap"):
            return
        with self._loose_lock:
            if self._loose is not None:
                if event == "RTM_NEWLINK":
                    self._loose.add(name)
                elif event == "RTM_DELLINK" and name not in self.plugger.moving:
                    # Also what our own MoveTap looks like; a tap moved ahead of its
                    # pass stays loose for that pass to plan (it is dropped after).
                    self._loose.discard(name)
        if event == "RTM_NEWLINK":
            self.cache.events.put(LinkChange(name))

    def _drain(self, timeout: float) -> set[str] | None:
        """Wait for an event; fold it and all that are already queued into the cache.

        Returns the networks to reconcile (None: all of them). Networks touched
        only through security-group membership are kept in `self._later`,
        for a pass right after this one's (see `ModelCache.apply_split`).
        """
        changed: set[str] | None = set()
        later: set[str] = set()
        deadline = time.monotonic() + timeout
        while True:
            idle = not changed and not later and changed is not None
            wait = deadline - time.monotonic()
            if idle and wait <= 0:
                break
            try:
                # Once something changed, fold in only what is already queued: what
                # comes while the pass runs is the next pass's batch.
                item = self.cache.events.get(timeout=wait) if idle \
                    else self.cache.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, BaseException):
                raise item
            if item is FULL_PASS:
                changed = None
                continue
            if item is WAKE:
                if self._stop.is_set():
                    return set()
                continue
            if isinstance(item, LinkChange):
                with self._loose_lock:
                    if self._loose is not None:
                        self._loose.add(item.name)
                port = self.cache.port_of_tap(item.name)
                split: tuple[set[str], set[str]] | None = (
                    {port.network_id} if port else set(), set())
                if port is not None:
                    self._eager_plug(port)
            else:
                split = self.cache.apply_split(item, stored=self._eager_plug)
            if split is None:
                changed = None
            elif changed is not None:
                changed |= split[0]
                later |= split[1]
        self._later = set() if changed is None else later - changed
        return changed

    def _eager_plug(self, port: Port) -> None:
        """Start moving a local port's loose tap into its routing namespace now, before
        the pass that plans it (see `Plugger.eager`): the move is the longest step
        of a port coming up (the kernel waits in `synchronize_net`), and it does
        not depend on the plan. Only into a namespace that exists and is tracked;
        the tap arrives down and is brought up by the pass, after its filtering.
        """
        node = self.cache.nodes.get(self.node_id)
        known = self.known
        if port.binding_host_id != self.node_id or node is None or known is None:
            return
        rns = naming.routing_ns(node.netns, port.network_id)
        tap = naming.tap(port.id)
        trusted = self._monitor is not None and self._monitor.running
        with self._loose_lock:
            loose = trusted and self._loose is not None and tap in self._loose
        space = known.namespaces.get(rns)
        if loose and space is not None and all(t.name != tap for t in space.taps):
            self.plugger.eager(MoveTap(node.netns, rns, tap))

    # -- reconcile ---------------------------------------------------------

    def desired(self, networks: set[str] | None = None) -> NodeKernel:
        node = self.cache.nodes.get(self.node_id)
        if node is None:
            raise NotFound(f"node {self.node_id} was deleted from the store")
        return desired.compute(node, self.cache.nodes, self.cache.networks,
                               self.cache.subnets, self.cache.ports, self.run_dir, networks,
                               groups=self.cache.security_view(),
                               router_objects=self.cache.routers,
                               floating_ips=self.cache.floating_ips)

    def reconcile(self, networks: set[str] | None = None) -> int:
        """One pass over `networks` (None: all): desired vs actual → ops → apply → statuses.

        An event touches one network, so only that routing namespace is read
        and planned; the periodic full pass catches everything else. A kernel
        failure is logged and retried (`dirty`); store failures propagate.
        Returns the op count.
        """
        start = time.monotonic()
        if networks is not None and networks & routers.attached_networks(self.cache.ports):
            # Routed networks are realized together (router namespace, legs, the
            # other attached networks' namespaces): plan them in one full pass.
            networks = None
        if networks is None:
            # A full pass reads the truth: let no early move land in the middle of
            # its read (the tap would be seen in neither namespace).
            self.plugger.settle()
        reading = self._start_reading() if networks is None else None
        try:
            want = self.desired(networks)  # while the kernel is being read
            desired_ms = 1000 * (time.monotonic() - start)
            if networks is None:
                self._claim_gateways(want)
        except BaseException:
            if reading is not None:
                reading.close()
            raise
        only = None if networks is None else {
            naming.routing_ns(want.node_ns, n) for n in networks}
        try:
            have = self._actual(want, only, reading)
            ops = plan(want, have)
            planned = time.monotonic()
            apply(self.kernel, self.run_dir, ops, self.plugger)
            applied = time.monotonic()
            self._track(want, have, ops, full=only is None)
            self.dirty = self.dirty and networks is not None
        except (SpanwireError, OSError) as exc:
            self.stats.errors += 1
            self.dirty = True
            self.known = None  # whatever ran before the failure is not tracked: read next time
            log.error("event=apply_failed node=%s error=%s retry_in=1s", self.node_id, exc)
            return 0
        self.stats.reconciles += 1
        self.stats.ops += len(ops)
        self.stats.last_ops = len(ops)
        self.stats.last_duration = time.monotonic() - start
        if self.stats.first_reconcile is None:
            self.stats.first_reconcile = time.monotonic() - self.stats.started
        log.info("event=reconciled node=%s scope=%s ops=%d duration_ms=%.1f desired_ms=%.1f "
                 "planned_ms=%.1f applied_ms=%.1f", self.node_id,
                 "all" if networks is None else ",".join(sorted(networks)), len(ops),
                 1000 * self.stats.last_duration, desired_ms, 1000 * (planned - start),
                 1000 * (applied - start))
        plugged = {op.name for op in ops if isinstance(op, MoveTap)}
        if plugged:
            with self._loose_lock:
                if self._loose is not None:
                    self._loose -= plugged
        if self._store is not None:
            self.status.report(self._store, self.cache.ports, want, have, networks, plugged)
        return len(ops)

    def _start_reading(self) -> actual.Reading | None:
        """A full read, started before the desired state is computed (see `actual.Reading`);
        None if it cannot start: the pass then reads, and fails, as it always did."""
        node = self.cache.nodes.get(self.node_id)
        if node is None or not node.netns:
            return None
        try:
            return actual.Reading(self.kernel, node.netns, self.run_dir)
        except (SpanwireError, OSError):
            return None

    def _actual(self, want: NodeKernel, only: set[str] | None,
                reading: actual.Reading | None = None) -> NodeKernel:
        """What the kernel holds: read on full passes; on event-driven passes, the state
        tracked since the last full read (`effects`) plus the node namespace's new taps.

        Reading a namespace with a thousand ports costs hundreds of milliseconds
        (links, addresses, routes, sysctls, nft); the tracked state costs
        nothing, and anything changed behind the agent's back is still found
        by the periodic full pass.
        """
        if only is not None and self.known is not None:
            spaces = {n: self.known.namespaces[n] for n in only if n in self.known.namespaces}
            trusted = self._monitor is not None and self._monitor.running
            with self._loose_lock:
                loose = frozenset(self._loose) if trusted and self._loose is not None else None
            if loose is None:
                loose = actual.loose_taps(want.node_ns)
            return NodeKernel(node_ns=want.node_ns, namespaces=spaces, loose_taps=loose)
        keys = {n: frozenset(k for k, _ in r.sysctls) for n, r in want.namespaces.items()}
        if reading is not None and only is None:
            return reading.finish(keys)
        return actual.read(self.kernel, want.node_ns, self.run_dir, keys, only)

    def _track(self, want: NodeKernel, have: NodeKernel, ops: list[Op], full: bool) -> None:
        """The kernel state after `ops`, computed (see `_actual`)."""
        if not full and self.known is None:
            return  # a partial read is no baseline; the next full pass makes one
        base = _with_applied_rulesets(want, have) if full else \
            replace(self.known, loose_taps=have.loose_taps)
        try:
            after = effects.run(base, ops)
        except effects.SimError as exc:
            log.warning("event=tracking_lost node=%s reason=%s (next pass reads the kernel)",
                        self.node_id, exc)
            self.known = None
            return
        spaces = {name: _sharing(rns, want.namespaces.get(name))
                  for name, rns in after.namespaces.items()}
        for op in ops:  # the one fact the model cannot know: the daemon's real pid
            if isinstance(op, StartDhcp) and op.ns in spaces and spaces[op.ns].dhcp:
                found = dnsmasq.find(op.ns, os.path.join(self.run_dir, op.ns))
                spaces[op.ns] = replace(spaces[op.ns], dhcp=replace(
                    spaces[op.ns].dhcp, pid=found[0] if found else 0))
        self.known = replace(after, namespaces=spaces)
        if self._monitor is not None and self._monitor.running:
            with self._loose_lock:
                # Taps that appeared while the kernel was read are added back by
                # their LinkChange (see `_drain`).
                self._loose = set(self.known.loose_taps)

    def _claim_gateways(self, want: NodeKernel) -> None:
        """Claim this node's external address for each router it realizes (and give back
        those of routers it no longer does). The new port comes back as a watch event,
        and the next pass realizes the gateway with it.
        """
        node = self.cache.nodes[self.node_id]
        realized = [rns.router_id for rns in want.namespaces.values() if rns.router_id]
        claim, release = north_south.claims(node, realized, self.cache.routers,
                                            self.cache.networks, self.cache.ports)
        if not (claim or release) or self._store is None:
            return
        from spanwire.api import node_gateways  # the API's allocator: one IPAM for every port

        for router_id in release:  # first: a stale port is released, then claimed again
            node_gateways.release(self._store, router_id, self.node_id)
            log.info("event=gateway_released node=%s router=%s", self.node_id, router_id)
        for router_id in claim:
            try:
                port = node_gateways.claim(self._store, router_id, self.node_id)
            except (InvalidInput, Conflict) as exc:  # e.g. the external pool is exhausted
                log.error("event=gateway_claim_failed node=%s router=%s error=%s "
                          "(no north-south for this router on this node)", self.node_id,
                          router_id, exc)
                continue
            log.info("event=gateway_claimed node=%s router=%s address=%s", self.node_id,
                     router_id, port.fixed_ips[0].ip_address if port and port.fixed_ips else "-")

    # -- liveness ----------------------------------------------------------

    def _ensure_lease(self, store: Store) -> None:
        if self._lease is not None and self._lease.lost is None:
            return
        if self._lease is not None:
            log.warning("event=lease_lost node=%s error=%s", self.node_id, self._lease.lost)
            self._lease.stop_keepalive()
        self._lease = store.grant_lease(self.lease_ttl)
        alive = NodeLiveness(id=self.node_id, agent_version=__version__,
                             capabilities=self.capabilities)
        store.put(alive.key, alive.to_bytes(), lease=self._lease.id)
        self._lease.start_keepalive()
        log.info("event=liveness node=%s lease=%d ttl=%d", self.node_id, self._lease.id,
                 self.lease_ttl)

    def _release_lease(self) -> None:
        if self._lease is None:
            return
        self._lease.stop_keepalive()
        try:
            self._lease.revoke()
        except Exception as exc:  # noqa: BLE001 - best effort on shutdown
            log.warning("event=lease_revoke_failed node=%s error=%s", self.node_id, exc)
        self._lease = None

    def _drop_store(self) -> None:
        self.cache.stop_watches()
        if self._lease is not None:
            self._lease.stop_keepalive()
            self._lease = None
        if self._store is not None:
            try:
                self._store.close()
            except Exception as exc:  # noqa: BLE001 - already failing
                log.debug("event=store_close_failed error=%s", exc)
            self._store = None


_ENTRY_FIELDS = ("sysctls", "taps", "addrs", "neighs", "fdbs", "routes")


def _sharing(have: RoutingNs, want: RoutingNs | None) -> RoutingNs:
    """`have`, holding `want`'s very sets where they are equal.

    The next pass diffs its desired sets against these: with the same element
    objects on both sides, a set difference over a thousand entries is a
    pointer comparison per entry instead of a dataclass `__eq__`.
    """
    if want is None:
        return have
    same = {f: getattr(want, f) for f in _ENTRY_FIELDS
            if getattr(have, f) is not getattr(want, f) and getattr(have, f) == getattr(want, f)}
    return replace(have, **same) if same else have


def _with_applied_rulesets(want: NodeKernel, have: NodeKernel) -> NodeKernel:
    """A freshly read kernel whose security table carries the digest of the desired one
    holds exactly that compiled table: remember it, so the next change can be incremental."""
    spaces = {}
    for name, rns in have.namespaces.items():
        wanted = want.namespaces.get(name)
        compiled = None if wanted is None else wanted.security
        if compiled is not None and compiled.digest == rns.security_digest:
            rns = replace(rns, security_applied=compiled)
        spaces[name] = rns
    return replace(have, namespaces=spaces)


def _check_traversable(path: str) -> None:
    """dnsmasq drops privileges to `nobody` and then re-reads its files under `path`."""
    current = os.path.abspath(path)
    while True:
        if not os.stat(current).st_mode & 0o001:
            raise InvalidInput(
                f"run dir {path}: {current} is not world-traversable, so dnsmasq (which runs "
                "as nobody) could not read its lease files; use e.g. /run/spanwire/<node> or "
                "chmod o+x the directories"
            )
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent
