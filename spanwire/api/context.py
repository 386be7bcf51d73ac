"""Who is calling: the request context every Neutron handler receives.

Built from the `X-Auth-Token` header on every request (FastAPI dependency), so
an expired or revoked token is refused by any replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from spanwire.api.identity.records import Identity


@dataclass(frozen=True, slots=True)
class Context:
    user_id: str
    project_id: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def can_write(self) -> bool:
        return "admin" in self.roles or "member" in self.roles


def get_context(request: Request) -> Context:
    identity: Identity = request.app.state.identity
    token = identity.validate(request.headers.get("x-auth-token"))
    return Context(user_id=token.user_id, project_id=token.project_id, roles=frozenset(token.roles))


CtxDep = Annotated[Context, Depends(get_context)]
