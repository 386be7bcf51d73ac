"""The api's additive model fields: stored, round-tripped, never shown to Neutron clients."""

from __future__ import annotations

from spanwire.api import views
from spanwire.model import FloatingIP, Network, Port


def test_quota_slot_round_trips_and_defaults_to_none() -> None:
    net = Network(project_id="p", quota_slot=7)
    assert Network.from_bytes(net.to_bytes()).quota_slot == 7
    assert Network(project_id="p").quota_slot is None
    # Objects written before the field existed still load.
    old = b'{"schema_version": 1, "id": "x", "project_id": "p"}'
    assert Network.from_bytes(old).quota_slot is None


def test_internal_fields_stay_internal() -> None:
    port = Port(project_id="p", network_id="n", mac_address="fa:16:3e:00:00:01", quota_slot=3)
    assert "quota_slot" not in views.port(port.model_dump(), "DOWN")
    fip = FloatingIP(project_id="p", floating_network_id="n", floating_ip_address="203.0.113.5",
                     floating_port_id="fp")
    shown = views.floatingip(fip.model_dump())
    assert "floating_port_id" not in shown and shown["status"] == "DOWN"
    net = views.network(Network(project_id="p").model_dump(), [], admin=False)
    assert "provider:segmentation_id" not in net and net["router:external"] is False
