"""Port status reporting: the agent writes `port_status/<port>` for its node's ports.

Only changes are written (the last written value is remembered, and loaded
from the store at start), so a restarted agent with nothing new to say makes
no store writes either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from spanwire.agent import naming
from spanwire.agent.state import NodeKernel
from spanwire.errors import SpanwireError
from spanwire.model import Port, PortStatus
from spanwire.store import Store

log = logging.getLogger("spanwire.agent.status")


class StatusReporter:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._written: dict[str, tuple[str, str]] = {}

    def load(self, store: Store) -> None:
        self._written = {}
        for kv in store.range(PortStatus.prefix()).items:
            try:
                status = PortStatus.from_bytes(kv.value)
            except SpanwireError:
                continue
            if status.node == self.node_id:
                self._written[status.id] = (status.status, status.detail)

    def report(self, store: Store, ports: Iterable[Port], want: NodeKernel, have: NodeKernel,
               networks: set[str] | None, plugged: set[str]) -> None:
        """Write PortStatus for local ports (of `networks`) whose status changed.

        A port is ACTIVE once its tap is in its routing namespace: found there,
        or plugged by the pass that just ran without error. Statuses of ports
        no longer bound here are deleted.
        """
        present = set(plugged)
        for rns in have.namespaces.values():
            present |= {t.name for t in rns.taps}
        mine = [p for p in ports if p.binding_host_id == self.node_id]
        for port in mine:
            if networks is not None and port.network_id not in networks:
                continue
            tap = naming.tap(port.id)
            realized = naming.routing_ns(want.node_ns, port.network_id) in want.namespaces
            if realized and tap in present:
                new = ("ACTIVE", "")
            elif realized:
                new = ("DOWN", f"waiting for device {tap}")
            else:
                new = ("DOWN", "network has no VXLAN segment")
            if self._written.get(port.id) != new:
                status = PortStatus(id=port.id, node=self.node_id, status=new[0], detail=new[1])
                store.put(status.key, status.to_bytes())
                self._written[port.id] = new
                log.info("event=port_status port=%s node=%s status=%s", port.id, self.node_id,
                         new[0])
        for port_id in sorted(set(self._written) - {p.id for p in mine}):
            store.delete(PortStatus.key_of(port_id))
            del self._written[port_id]
