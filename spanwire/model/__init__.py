"""The resource model: every object spanwire stores, validated and schema-versioned."""

from spanwire.model.base import ProjectResource, Resource, new_id, utcnow
from spanwire.model.floatingip import FloatingIP
from spanwire.model.network import Network
from spanwire.model.node import Node
from spanwire.model.port import AddressPair, FixedIP, Port
from spanwire.model.router import ExternalGatewayInfo, Router
from spanwire.model.security_group import SecurityGroup, SecurityGroupRule
from spanwire.model.status import NodeLiveness, PortStatus
from spanwire.model.subnet import AllocationPool, HostRoute, Subnet

KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls
    for cls in (
        Node,
        Network,
        Subnet,
        Port,
        Router,
        FloatingIP,
        SecurityGroup,
        SecurityGroupRule,
        PortStatus,
        NodeLiveness,
    )
}

__all__ = [
    "KINDS",
    "AddressPair",
    "AllocationPool",
    "ExternalGatewayInfo",
    "FixedIP",
    "FloatingIP",
    "HostRoute",
    "Network",
    "Node",
    "NodeLiveness",
    "Port",
    "PortStatus",
    "ProjectResource",
    "Resource",
    "Router",
    "SecurityGroup",
    "SecurityGroupRule",
    "Subnet",
    "new_id",
    "utcnow",
]
