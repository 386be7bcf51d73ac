"""Identity objects in the store: users, projects, role assignments, tokens.

Names are unique per domain through name-index keys created with
`Compare.absent` in the same transaction as the object, so two replicas
cannot create two users called `alice`. Tokens are stored by the SHA-256 of
their value (a store reader cannot replay them) together with their expiry,
which every replica checks on every request.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field

from spanwire.errors import Conflict, NotFound, Unauthorized
from spanwire.store import keys
from spanwire.store.base import Compare, Delete, Put, Store

DEFAULT_DOMAIN = {"id": "default", "name": "Default"}
ROLES = ("admin", "member", "reader")
# Keystone's default implied roles: admin => member => reader.
IMPLIED = {
    "admin": ("admin", "member", "reader"),
    "member": ("member", "reader"),
    "reader": ("reader",),
}
_hasher = PasswordHasher()


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    schema_version: int = 1


class User(_Record):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    name: str
    domain_id: str = "default"
    password_hash: str
    default_project_id: str | None = None
    enabled: bool = True


class Project(_Record):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    name: str
    domain_id: str = "default"
    description: str = ""
    enabled: bool = True


class Token(_Record):
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: list[str]
    methods: list[str]
    issued_at: float
    expires_at: float
    audit_id: str


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _name_seg(name: str) -> str:
    """Names may hold any character; key segments may not, so index by hex."""
    return name.encode().hex() or "00"


def _dump(obj: BaseModel) -> bytes:
    return obj.model_dump_json().encode()


class Identity:
    """Identity operations on one store; thread-safe, caches validated tokens briefly."""

    CACHE_SECONDS = 3.0

    def __init__(self, store: Store, token_ttl: int = 3600) -> None:
        self.store = store
        self.token_ttl = token_ttl
        self._cache: dict[str, tuple[float, Token]] = {}
        self._lock = threading.Lock()

    # users and projects -------------------------------------------------
    def create_user(
        self,
        name: str,
        password: str,
        domain_id: str = "default",
        default_project_id: str | None = None,
    ) -> User:
        user = User(
            name=name,
            domain_id=domain_id,
            password_hash=_hasher.hash(password),
            default_project_id=default_project_id,
        )
        index = keys.key("user_names", domain_id, _name_seg(name))
        ok = self.store.txn(
            [Compare.absent(index)],
            [Put(index, user.id.encode()), Put(keys.key("users", user.id), _dump(user))],
        ).succeeded
        if not ok:
            raise Conflict(f"Duplicate entry: a user named {name!r} exists in domain {domain_id}")
        return user

    def create_project(
        self, name: str, domain_id: str = "default", description: str = ""
    ) -> Project:
        project = Project(name=name, domain_id=domain_id, description=description)
        index = keys.key("project_names", domain_id, _name_seg(name))
        ok = self.store.txn(
            [Compare.absent(index)],
            [
                Put(index, project.id.encode()),
                Put(keys.key("projects", project.id), _dump(project)),
            ],
        ).succeeded
        if not ok:
            raise Conflict(
                f"Duplicate entry: a project named {name!r} exists in domain {domain_id}"
            )
        return project

    def user(self, user_id: str) -> User:
        kv = self.store.get(keys.key("users", user_id)) if _safe(user_id) else None
        if kv is None:
            raise NotFound(f"Could not find user: {user_id}.")
        return User.model_validate_json(kv.value)

    def project(self, project_id: str) -> Project:
        kv = self.store.get(keys.key("projects", project_id)) if _safe(project_id) else None
        if kv is None:
            raise NotFound(f"Could not find project: {project_id}.")
        return Project.model_validate_json(kv.value)

    def user_by_name(self, name: str, domain_id: str = "default") -> User:
        kv = self.store.get(keys.key("user_names", _dom(domain_id), _name_seg(name)))
        if kv is None:
            raise NotFound(f"Could not find user: {name}.")
        return self.user(kv.value.decode())

    def project_by_name(self, name: str, domain_id: str = "default") -> Project:
        kv = self.store.get(keys.key("project_names", _dom(domain_id), _name_seg(name)))
        if kv is None:
            raise NotFound(f"Could not find project: {name}.")
        return self.project(kv.value.decode())

    def users(self) -> list[User]:
        return [
            User.model_validate_json(kv.value)
            for kv in self.store.range(keys.prefix("users")).items
        ]

    def projects(self) -> list[Project]:
        listing = self.store.range(keys.prefix("projects"))
        return [Project.model_validate_json(kv.value) for kv in listing.items]

    def delete_user(self, user_id: str) -> None:
        user = self.user(user_id)
        ops: list[Put | Delete] = [
            Delete(keys.key("users", user.id)),
            Delete(keys.key("user_names", user.domain_id, _name_seg(user.name))),
        ]
        for project in self.projects():
            for role in ROLES:
                ops.append(Delete(keys.key("role_assignments", project.id, user.id, role)))
        self.store.txn([], ops)

    def delete_project(self, project_id: str) -> None:
        project = self.project(project_id)
        self.store.txn(
            [],
            [
                Delete(keys.key("projects", project.id)),
                Delete(keys.key("project_names", project.domain_id, _name_seg(project.name))),
            ],
        )

    # roles ---------------------------------------------------------------
    def grant(self, project_id: str, user_id: str, role: str) -> None:
        if role not in ROLES:
            raise NotFound(f"Could not find role: {role}.")
        self.project(project_id)
        self.user(user_id)
        self.store.put(keys.key("role_assignments", project_id, user_id, role), b"{}")

    def revoke(self, project_id: str, user_id: str, role: str) -> None:
        if not (_safe(project_id) and _safe(user_id) and role in ROLES):
            raise NotFound("Could not find role assignment.")
        if not self.store.delete(keys.key("role_assignments", project_id, user_id, role)):
            raise NotFound("Could not find role assignment.")

    def roles_of(self, project_id: str, user_id: str) -> list[str]:
        if not (_safe(project_id) and _safe(user_id)):
            return []
        listing = self.store.range(keys.prefix("role_assignments", project_id, user_id))
        direct = {keys.split(kv.key)[-1] for kv in listing.items}
        return sorted({r for d in direct if d in IMPLIED for r in IMPLIED[d]})

    def assignments(self) -> list[tuple[str, str, str]]:
        """Every direct role assignment as (project_id, user_id, role)."""
        listing = self.store.range(keys.prefix("role_assignments"))
        return [tuple(keys.split(kv.key)[1:4]) for kv in listing.items]  # type: ignore[misc]

    def user_projects(self, user_id: str) -> list[Project]:
        return [p for p in self.projects() if self.roles_of(p.id, user_id)]

    # tokens --------------------------------------------------------------
    def authenticate(self, user: User, password: str) -> None:
        try:
            _hasher.verify(user.password_hash, password)
        except (VerificationError, InvalidHashError):
            raise Unauthorized("The request you have made requires authentication.") from None
        if not user.enabled:
            raise Unauthorized("The request you have made requires authentication.")

    def issue(self, user: User, project: Project, methods: list[str]) -> tuple[str, Token]:
        roles = self.roles_of(project.id, user.id)
        if not roles:
            raise Unauthorized(f"User {user.id} has no access to project {project.id}")
        now = time.time()
        token = Token(
            user_id=user.id,
            user_name=user.name,
            project_id=project.id,
            project_name=project.name,
            roles=roles,
            methods=methods,
            issued_at=now,
            expires_at=now + self.token_ttl,
            audit_id=secrets.token_urlsafe(16),
        )
        value = secrets.token_urlsafe(32)
        self.store.put(_token_key(value), _dump(token))
        return value, token

    def cached(self, value: str | None) -> Token | None:
        """The token's record if this replica validated it in the last CACHE_SECONDS.

        Never touches the store, so the event loop may call it; None means "ask
        `validate`" (which reads the store), not "invalid".
        """
        if not value:
            return None
        now = time.time()
        with self._lock:
            hit = self._cache.get(value)
        if hit is not None and hit[0] > now and hit[1].expires_at > now:
            return hit[1]
        return None

    def validate(self, value: str | None) -> Token:
        """The token's record if it exists and has not expired; Unauthorized otherwise."""
        if not value or len(value) > 512:
            raise Unauthorized("The request you have made requires authentication.")
        hit = self.cached(value)
        if hit is not None:
            return hit
        now = time.time()
        kv = self.store.get(_token_key(value))
        if kv is None:
            raise Unauthorized("The request you have made requires authentication.")
        token = Token.model_validate_json(kv.value)
        if token.expires_at <= now:
            self.store.delete(kv.key)
            raise Unauthorized("The token has expired.")
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[value] = (now + self.CACHE_SECONDS, token)
        return token

    def revoke_token(self, value: str) -> None:
        self.validate(value)
        with self._lock:
            self._cache.pop(value, None)
        self.store.delete(_token_key(value))


def _token_key(value: str) -> str:
    return keys.key("tokens", hashlib.sha256(value.encode()).hexdigest())


def _safe(segment: str) -> bool:
    return bool(segment) and len(segment) < 128 and keys._SEGMENT.match(segment) is not None


def _dom(domain_id: str) -> str:
    return domain_id if _safe(domain_id) else "-"


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "domain_id": user.domain_id,
        "enabled": user.enabled,
        "default_project_id": user.default_project_id,
        "password_expires_at": None,
        "options": {},
        "links": {"self": f"/v3/users/{user.id}"},
    }


def project_view(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "domain_id": project.domain_id,
        "description": project.description,
        "enabled": project.enabled,
        "is_domain": False,
        "parent_id": project.domain_id,
        "tags": [],
        "options": {},
        "links": {"self": f"/v3/projects/{project.id}"},
    }


def role_view(role: str) -> dict[str, Any]:
    return {
        "id": role,
        "name": role,
        "domain_id": None,
        "description": None,
        "options": {},
        "links": {"self": f"/v3/roles/{role}"},
    }
