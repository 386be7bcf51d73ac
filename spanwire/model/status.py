"""Runtime state written by agents, kept apart from the desired state the api writes.

Agents and the api never compete for the same key: the api owns resources,
each agent owns its node's status keys, so neither CAS-fails the other.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from spanwire.model.base import Resource, utcnow


class PortStatus(Resource):
    """`id` is the port id; ACTIVE once the node wired the port into its kernel."""

    KIND = "port_status"

    node: str
    status: Literal["ACTIVE", "DOWN", "ERROR", "BUILD"] = "DOWN"
    detail: str = ""
    updated_at: str = Field(default_factory=utcnow)


class NodeLiveness(Resource):
    """`id` is the node name; put with the agent's lease, so it vanishes with the agent."""

    KIND = "node_alive"

    agent_version: str
    capabilities: dict[str, bool] = Field(default_factory=dict)
    started_at: str = Field(default_factory=utcnow)
