"""Policy, pure: who sees and changes what."""

from __future__ import annotations

import pytest

from spanwire.api import policy
from spanwire.api.context import Context
from spanwire.errors import Forbidden

ADMIN = Context("u0", "p-admin", frozenset({"admin", "member", "reader"}))
MEMBER = Context("u1", "p-a", frozenset({"member", "reader"}))
READER = Context("u2", "p-a", frozenset({"reader"}))


def test_roles() -> None:
    policy.require_write(MEMBER, "create_port")
    with pytest.raises(Forbidden):
        policy.require_write(READER, "create_port")
    with pytest.raises(Forbidden):
        policy.require_admin(MEMBER, "create_network:provider")
    policy.require_admin(ADMIN, "create_network:provider")


def test_visibility() -> None:
    own = {"project_id": "p-a"}
    other = {"project_id": "p-b"}
    assert policy.can_see(MEMBER, "ports", own) and policy.can_see(READER, "ports", own)
    assert not policy.can_see(MEMBER, "ports", other)
    assert policy.can_see(ADMIN, "ports", other)
    assert policy.can_see(MEMBER, "networks", {**other, "shared": True})
    assert policy.can_see(MEMBER, "networks", {**other, "router_external": True})
    assert not policy.can_see(MEMBER, "networks", {**other, "shared": False})


def test_acting_for_another_project() -> None:
    assert policy.target_project(MEMBER, {}, "x") == "p-a"
    assert policy.target_project(ADMIN, {"project_id": "p-b"}, "x") == "p-b"
    with pytest.raises(Forbidden):
        policy.target_project(MEMBER, {"tenant_id": "p-b"}, "x")
    with pytest.raises(Forbidden):
        policy.target_project(ADMIN, {"tenant_id": "p-b", "project_id": "p-c"}, "x")
