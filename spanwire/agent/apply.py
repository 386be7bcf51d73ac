"""Execute planned ops through the data-plane layer. No decisions here."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from spanwire.agent.plan import ops as o
from spanwire.agent.plan.nft_table import RulesetChange, grants_only
from spanwire.dataplane import dnsmasq, garp, netns, nft, sysctl
from spanwire.dataplane.kernel import Kernel

log = logging.getLogger("spanwire.agent.apply")


class Plugger:
    """Moves taps into their routing namespaces from a thread of its own, while the
    reconcile thread applies what goes before them.

    Moving a link between namespaces waits in the kernel (`synchronize_net`,
    15 to 30 ms here) and a new port's security table is one nft transaction;
    neither needs the other, so a port comes up in the longer of the two
    instead of their sum. The tap arrives down (a move closes a
    device) and the plan brings it up only after its filtering is in: nothing
    flows early. The worker thread owns its own `Kernel`: pyroute2 sockets are
    used only by the thread that made them.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plugger")
        self._local = threading.local()
        self._kernels: list[Kernel] = []
        self._lock = threading.Lock()
        self._early: dict[o.MoveTap, Future[None]] = {}
        self.moving: set[str] = set()  # taps moved ahead of any plan, not yet accounted
        self._filter_pool: ThreadPoolExecutor | None = None

    def eager(self, op: o.MoveTap) -> None:
        """Start a move before the pass that will plan it (the runner knows from the event
        that this tap goes there): the pass's MoveTap then only waits for it."""
        with self._lock:
            if op not in self._early:
                self.moving.add(op.name)
                self._early[op] = self.submit(op)

    def take(self, op: o.MoveTap) -> Future[None] | None:
        with self._lock:
            return self._early.pop(op, None)

    def done(self, name: str) -> None:
        with self._lock:
            self.moving.discard(name)

    def settle(self) -> None:
        """Wait for the eager moves no plan took, and forget them (before a full pass,
        which reads the truth)."""
        with self._lock:
            early, self._early = self._early, {}
            self.moving.clear()
        for op, move in early.items():
            try:
                move.result()
            except Exception as exc:  # noqa: BLE001 - the full pass already saw the kernel
                log.warning("event=eager_move_failed tap=%s error=%s", op.name, exc)

    def _move(self, node_ns: str, name: str, ns: str) -> None:
        started = time.monotonic()
        self._kernel().move_link(node_ns, name, ns)
        # Logged where it ran: the pass's MoveTap line shows only what was left to wait.
        log.info("event=tap_moved tap=%s ns=%s ms=%.1f", name, ns,
                 1000 * (time.monotonic() - started))

    def warm(self, node_ns: str) -> None:
        """Load pyroute2 and open the node namespace's socket now, in the worker, while the
        agent is idle after its first pass: otherwise the first port to come up after a
        restart would wait for both (about 0.3 s). The reconcile thread's own first
        write then finds pyroute2 imported."""
        self._pool.submit(self._open, node_ns)

    def _open(self, node_ns: str) -> None:
        try:
            self._kernel().ipr(node_ns)
        except Exception as exc:  # noqa: BLE001 - only a head start; moves open it anyway
            log.warning("event=plugger_warmup_failed ns=%s error=%s", node_ns, exc)

    def _kernel(self) -> Kernel:
        kernel = getattr(self._local, "kernel", None)
        if kernel is None:
            kernel = self._local.kernel = Kernel()
            self._kernels.append(kernel)
        return kernel

    def submit(self, op: o.MoveTap) -> Future[None]:
        return self._pool.submit(self._move, op.node_ns, op.name, op.ns)

    def filter(self, op: o.ApplyRuleset) -> Future[float]:
        """Run a filtering transaction in a thread of its own, returning its duration (ms).

        libnftables spends it fetching the table (about 8 ms with a thousand
        ports) and in the kernel, without the GIL: the reconcile thread waits
        for the port's tap move meanwhile (see `apply`).
        """
        if self._filter_pool is None:
            self._filter_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="filter")
        return self._filter_pool.submit(_timed_nft_apply, op.ns, op.payload)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self._filter_pool is not None:
            self._filter_pool.shutdown(wait=True)
        for kernel in self._kernels:
            kernel.close()


def _timed_nft_apply(ns: str, payload: str) -> float:
    started = time.monotonic()
    nft.apply(ns, payload)
    return 1000 * (time.monotonic() - started)


def apply(kernel: Kernel, run_dir: str, ops: Sequence[o.Op], plugger: Plugger | None = None
          ) -> int:
    """Run `ops` in order; return how many ran. Stops at the first failure (raised).

    With a `plugger`, taps bound for namespaces that already exist start moving
    at once (see `Plugger`); each MoveTap op then waits for its own move. And a
    filtering transaction runs in the plugger's filter thread while the ops
    that cannot let traffic through (`_ALONGSIDE_FILTERING`; more for a
    change that only adds members, `_ALONGSIDE_NEW_MEMBERS`) go on; the first
    other op waits for it.
    """
    early = _start_moves(ops, plugger) if plugger is not None else {}
    pending_sysctls: dict[str, dict[str, str]] = {}
    filtering: tuple[o.ApplyRuleset, Future[float]] | None = None
    done = 0
    try:
        for op in ops:
            if filtering is not None and not _may_overlap(filtering[0], op):
                running, filtering = filtering, None
                _finish_filtering(kernel, *running)
            if plugger is not None and isinstance(op, o.ApplyRuleset) and \
                    op.change in _WRITES_FILTERING:
                filtering = (op, plugger.filter(op))
                done += 1
                continue
            if isinstance(op, o.SetSysctl):
                # Batched per namespace: one thread hop instead of one per key.
                pending_sysctls.setdefault(op.ns, {})[op.key] = op.value
                done += 1
                continue
            _flush(kernel, pending_sysctls)
            started = time.monotonic()
            move = early.pop(op, None) if isinstance(op, o.MoveTap) else None
            if move is not None:
                _finish_move(kernel, op, move, plugger)
            else:
                _one(kernel, run_dir, op)
            log.info("op=%s %s ms=%.1f", type(op).__name__, _describe(op),
                     1000 * (time.monotonic() - started))
            done += 1
        _flush(kernel, pending_sysctls)
        if filtering is not None:
            running, filtering = filtering, None
            _finish_filtering(kernel, *running)
    finally:
        if filtering is not None:  # a failure stopped the pass: its transaction ends first
            try:
                filtering[1].result()
            except Exception:  # noqa: BLE001 - the first failure is the one raised
                log.warning("event=filtering_failed ns=%s", filtering[0].ns)
        for op, move in early.items():  # a failure stopped the pass: let no move outlive it
            try:
                _finish_move(kernel, op, move, plugger)
            except Exception:  # noqa: BLE001 - the first failure is the one raised
                log.warning("event=early_move_failed tap=%s", op.name)
    return done


# What may run while a namespace's filtering transaction is in flight: nothing that
# lets traffic through (a tap stays down until it is done; routes need it up).
_ALONGSIDE_FILTERING = (o.SetSysctl, o.AddAddr, o.ReplaceNeigh, o.ReplaceFdb, o.MoveTap)
# A change that only adds remote-group members (RulesetChange.SETS, nothing deleted)
# gates less: while it runs, every member it adds is still denied, so a route, a
# removed entry or a DHCP reload written meanwhile cannot let through anything the
# end state forbids; and no tap comes up in such a pass (a new secured port adds
# chains, an INCREMENTAL change). On a peer node, the new port's route is what its
# first packet waits for; it need not wait for the set too. A change that removes a
# member still holds everything back (a route must not meet a member being
# revoked), and links (SetLink, legs, namespaces) and every other ruleset op wait.
_ALONGSIDE_NEW_MEMBERS = (*_ALONGSIDE_FILTERING, o.ReplaceRoute, o.DelRoute, o.DelNeigh,
                          o.DelFdb, o.DelAddr, o.ReloadDhcp)
_WRITES_FILTERING = (RulesetChange.INCREMENTAL, RulesetChange.SETS, RulesetChange.REPLACE)


def _may_overlap(running: o.ApplyRuleset, op: o.Op) -> bool:
    """Whether `op` may run while `running`'s transaction is in flight."""
    new_members = running.change == RulesetChange.SETS and grants_only(running.payload)
    return isinstance(op, _ALONGSIDE_NEW_MEMBERS if new_members else _ALONGSIDE_FILTERING)


def _finish_filtering(kernel: Kernel, op: o.ApplyRuleset, running: Future[float]) -> None:
    took = running.result()
    kernel.writes += 1
    log.info("op=%s %s ms=%.1f", type(op).__name__, _describe(op), took)


def _start_moves(ops: Sequence[o.Op], plugger: Plugger) -> dict[o.MoveTap, Future[None]]:
    created = {op.ns for op in ops if isinstance(op, o.CreateNetns)}
    return {op: plugger.take(op) or plugger.submit(op) for op in ops
            if isinstance(op, o.MoveTap) and op.ns not in created}


def _finish_move(kernel: Kernel, op: o.MoveTap, move: Future[None],
                 plugger: Plugger | None) -> None:
    try:
        move.result()
    finally:
        if plugger is not None:
            plugger.done(op.name)
    kernel.writes += 1
    kernel.forget_index(op.node_ns, op.name)  # it moved behind this Kernel's back


def _flush(kernel: Kernel, pending: dict[str, dict[str, str]]) -> None:
    for ns, values in pending.items():
        sysctl.write(ns, values)
        kernel.writes += len(values)
        log.info("op=SetSysctl ns=%s count=%d", ns, len(values))
    pending.clear()


def _describe(op: o.Op) -> str:
    fields = []
    for name, value in vars(op).items():
        if name in ("dhcp", "payload"):
            continue
        fields.append(f"{name}={value}")
    return " ".join(fields)


def _one(kernel: Kernel, run_dir: str, op: o.Op) -> None:
    match op:
        case o.CreateNetns(ns):
            netns.create(ns)
            kernel.writes += 1
        case o.DeleteNetns(ns):
            for link in kernel.links(ns):
                if link.name != "lo":
                    kernel.delete_link(ns, link.name)
            kernel.forget(ns)
            netns.remove(ns)
            kernel.writes += 1
            dnsmasq.stop(ns, 0, os.path.join(run_dir, ns))
        case o.CreateVxlan(node_ns, ns, vx):
            kernel.create_vxlan(node_ns, ns, vx.name, vx.vni, vx.local, vx.port, vx.mtu, vx.mac)
        case o.CreateLeg(ns, leg):
            kernel.create_veth(ns, leg.name, leg.peer, leg.peer_ns, mtu=leg.mtu)
        case o.CreateGateway(node_ns, ns, gw):
            kernel.create_macvlan(node_ns, gw.parent, ns, gw.name, gw.mac, gw.mtu)
        case o.Announce(ns, dev, ip):
            garp.announce(ns, dev, ip)
        case o.MoveTap(node_ns, ns, name):
            kernel.move_link(node_ns, name, ns)
        case o.SetLink(ns, name, mtu, mac, up):
            kernel.set_link(ns, name, mtu=mtu, mac=mac, up=up)
        case o.DeleteLink(ns, name):
            kernel.delete_link(ns, name)
        case o.AddAddr(ns, addr):
            kernel.addr(ns, "add", addr.dev, addr.cidr)
        case o.DelAddr(ns, addr):
            kernel.addr(ns, "del", addr.dev, addr.cidr)
        case o.ReplaceNeigh(ns, n):
            kernel.neigh(ns, "replace", n.dev, n.ip, n.mac)
        case o.DelNeigh(ns, n):
            kernel.neigh(ns, "del", n.dev, n.ip, n.mac)
        case o.ReplaceFdb(ns, f):
            kernel.fdb(ns, "replace", f.dev, f.mac, f.dst)
        case o.DelFdb(ns, f):
            kernel.fdb(ns, "del", f.dev, f.mac, f.dst)
        case o.ReplaceRoute(ns, r):
            kernel.route(ns, "replace", r.dst, r.dev, r.via)
        case o.DelRoute(ns, r):
            kernel.route(ns, "del", r.dst, r.dev, r.via)
        case o.StartDhcp(ns, dhcp):
            dnsmasq.start(ns, dhcp.argv, dhcp.files)
            kernel.writes += 1
        case o.ReloadDhcp(ns, dhcp, pid):
            dnsmasq.reload(ns, pid, dhcp.files)
            kernel.writes += 1
        case o.StopDhcp(ns, pid):
            dnsmasq.stop(ns, pid, os.path.join(run_dir, ns))
            kernel.writes += 1
        case o.ApplyRuleset(ns, RulesetChange.DELETE, _, table):
            nft.delete_table(ns, table)
            kernel.writes += 1
        case o.ApplyRuleset(ns, _, payload, _):
            nft.apply(ns, payload)
            kernel.writes += 1
        case _:
            raise TypeError(f"unknown op {op!r}")
