"""Common base of every stored resource: frozen, validated, schema-versioned.

A stored value is the JSON of the model including `schema_version`. Reading an
older version runs the registered migrations `vN -> vN+1` in order, so a newer
api or agent can read what an older one wrote (rolling upgrades).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spanwire.errors import InvalidInput
from spanwire.store import keys

Migration = Callable[[dict[str, Any]], dict[str, Any]]


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> str:
    """Neutron's timestamp format: second precision, UTC, trailing Z."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Resource(BaseModel):
    """A stored object. Subclasses set KIND (the store key kind) and SCHEMA_VERSION."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    KIND: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    # Registered per subclass: {from_version: function producing from_version + 1}.
    MIGRATIONS: ClassVar[dict[int, Migration]] = {}

    schema_version: int = Field(default=1, ge=1)
    id: str = Field(default_factory=new_id)

    def model_post_init(self, __context: Any) -> None:
        if self.schema_version != self.SCHEMA_VERSION:
            object.__setattr__(self, "schema_version", self.SCHEMA_VERSION)

    @property
    def key(self) -> str:
        return keys.key(self.KIND, self.id)

    @classmethod
    def key_of(cls, resource_id: str) -> str:
        return keys.key(cls.KIND, resource_id)

    @classmethod
    def prefix(cls) -> str:
        return keys.prefix(cls.KIND)

    def to_bytes(self) -> bytes:
        return self.model_dump_json(by_alias=False).encode()

    @classmethod
    def migrate(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Bring a stored dict up to SCHEMA_VERSION, one step at a time."""
        version = int(data.get("schema_version", 1))
        if version > cls.SCHEMA_VERSION:
            raise InvalidInput(
                f"{cls.KIND} {data.get('id')} has schema v{version}, newer than this "
                f"spanwire understands (v{cls.SCHEMA_VERSION}); upgrade this component"
            )
        while version < cls.SCHEMA_VERSION:
            step = cls.MIGRATIONS.get(version)
            if step is None:
                raise InvalidInput(f"no migration for {cls.KIND} v{version} -> v{version + 1}")
            data = step(dict(data))
            version += 1
            data["schema_version"] = version
        return data

    @classmethod
    def from_bytes(cls, raw: bytes) -> Self:
        try:
            data = orjson.loads(raw)  # several times faster than json: agents load thousands
        except ValueError as exc:
            raise InvalidInput(f"stored {cls.KIND} is not JSON: {exc}") from exc
        try:
            return cls.model_validate(cls.migrate(data))
        except ValidationError as exc:
            raise InvalidInput(f"stored {cls.KIND} is invalid: {exc}") from exc

    def evolve(self, **changes: Any) -> Self:
        """A validated copy with `changes` applied (models are frozen)."""
        data = self.model_dump()
        data.update(changes)
        return type(self).model_validate(data)


class ProjectResource(Resource):
    """A tenant-owned Neutron resource with the standard attributes."""

    project_id: str
    name: str = Field(default="", max_length=255)
    description: str = Field(default="", max_length=255)
    tags: list[str] = Field(default_factory=list)
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)
    revision_number: int = Field(default=0, ge=0)
    # Internal to the api: the quota slot this object holds (api/quota_logic.py).
    # Never shown to Neutron clients; agents can ignore it.
    quota_slot: int | None = Field(default=None, ge=0)

    @property
    def tenant_id(self) -> str:
        return self.project_id
