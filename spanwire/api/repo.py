"""Reading and rendering stored resources for handlers.

Lists work on raw JSON dicts rather than models: a 10,000-port listing must
not pay for 10,000 pydantic validations of data that was validated on write.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import Response

from spanwire.api import jsonio, policy, query
from spanwire.api.allocation import UsedCache
from spanwire.api.context import Context
from spanwire.api.errors import not_found
from spanwire.api.kvcache import KVCache
from spanwire.api.settings import ApiSettings
from spanwire.errors import Forbidden, InvalidInput
from spanwire.model import ProjectResource, utcnow
from spanwire.store.base import KeyValue, Store

M = TypeVar("M", bound=ProjectResource)
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


def safe_id(value: object) -> bool:
    return isinstance(value, str) and _ID.match(value) is not None


def check_id(value: object, what: str) -> str:
    if not safe_id(value):
        raise InvalidInput(f"Invalid input for {what}. Reason: '{value}' is not a valid id.")
    return str(value)


class Deps:
    """What a handler needs from the app: store, id cache and settings.

    Handlers build it from their request (`Deps(request)`), sharing the
    replica's caches; code outside a request (the node agent claiming its
    gateway ports) builds one with `Deps.from_store`.
    """

    store: Store
    cache: UsedCache
    settings: ApiSettings
    kv: KVCache
    request: Request | None

    def __init__(self, request: Request) -> None:
        state = request.app.state
        self._set(state.store, state.cache, state.settings, state.kv, request)

    def _set(
        self,
        store: Store,
        cache: UsedCache,
        settings: ApiSettings,
        kv: KVCache,
        request: Request | None,
    ) -> None:
        self.store, self.cache, self.settings, self.kv = store, cache, settings, kv
        self.request = request

    @classmethod
    def from_store(cls, store: Store, settings: ApiSettings | None = None) -> Deps:
        """Deps on `store` alone, with fresh caches (hints only: every read that
        matters is compared on commit) and default settings unless given.
        Such deps can plan and commit but not render a response."""
        deps = cls.__new__(cls)
        deps._set(store, UsedCache(store), settings or ApiSettings(), KVCache(store), None)
        return deps

    def http(self) -> Request:
        """The request these deps serve; only handlers' deps have one."""
        if self.request is None:
            raise RuntimeError("store-only Deps (Deps.from_store) have no request to answer")
        return self.request


def load(
    store: Store, model: type[M], resource_id: str, kv_cache: KVCache | None = None
) -> tuple[M, KeyValue] | None:
    """The object and its kv; through `kv_cache` only if the caller compares the kv on commit."""
    if not safe_id(resource_id):
        return None
    key = model.key_of(resource_id)
    kv = kv_cache.get(key) if kv_cache is not None else store.get(key)
    if kv is None:
        return None
    obj = (
        kv_cache.parsed(kv, model.from_bytes)
        if kv_cache is not None
        else model.from_bytes(kv.value)
    )
    return obj, kv


def fetch(
    store: Store, ctx: Context, model: type[M], resource_id: str, kv_cache: KVCache | None = None
) -> tuple[M, KeyValue]:
    """The object if it exists and the caller may see it; NotFound otherwise."""
    found = load(store, model, resource_id, kv_cache)
    if found is None or not policy.can_see(ctx, model.KIND, found[0].model_dump()):
        raise not_found(model.KIND, resource_id)
    return found


def fetch_owned(
    store: Store, ctx: Context, model: type[M], resource_id: str, action: str
) -> tuple[M, KeyValue]:
    """Like fetch, but the caller must also be allowed to change it (403 if only visible)."""
    policy.require_write(ctx, action)
    obj, kv = fetch(store, ctx, model, resource_id)
    if not policy.owns(ctx, obj.project_id):
        raise Forbidden(f"rule:{action} is disallowed by policy")
    return obj, kv


def raw_list(store: Store, model: type[ProjectResource]) -> list[dict[str, Any]]:
    return [jsonio.loads(kv.value) for kv in store.range(model.prefix()).items]


def owned_list(store: Store, ctx: Context, model: type[ProjectResource]) -> list[dict[str, Any]]:
    """Every stored object of `model` the caller may see (admins see all)."""
    return [d for d in raw_list(store, model) if policy.owns(ctx, d["project_id"])]


def bumped(obj: M, **changes: Any) -> M:
    """An updated copy: Neutron increments revision_number and updated_at on every change."""
    return obj.evolve(**changes, revision_number=obj.revision_number + 1, updated_at=utcnow())


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(jsonio.dumps(content), status_code=status_code, media_type="application/json")


def list_response(
    deps: Deps,
    collection: str,
    items: list[dict[str, Any]],
    attributes: set[str],
    fragments: dict[str, bytes] | None = None,
) -> Response:
    """Apply Neutron list semantics from the request's query string and render.

    With `fragments` (each item's JSON, from `RenderCache`) a listing without
    `fields=` is assembled from bytes instead of encoding every item again.
    """
    request = deps.http()
    q = query.parse(request.query_params.multi_items(), attributes)
    page, more = query.select(items, q)
    url = str(request.url).split("?", 1)[0]
    links = query.links(url, collection, q, page, more)
    if fragments is not None and not q.fields:
        parts = [b'{"', collection.encode(), b'":[', b",".join(fragments[i["id"]] for i in page)]
        parts.append(b"]")
        if links:
            parts += [b",", jsonio.dumps(links)[1:-1]]
        parts.append(b"}")
        return Response(b"".join(parts), media_type="application/json")
    body: dict[str, Any] = {collection: [query.project_fields(i, q.fields) for i in page]}
    body.update(links)
    return json_response(body)


class RenderCache:
    """Per-replica memo of rendered list items, keyed by key, mod_revision and `extra`.

    A stored object that did not change is neither parsed nor encoded again,
    which is most of the cost of listing 10,000 ports. Cached dicts are shared:
    callers never mutate them.
    """

    MAX_ENTRIES = 200_000

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, Hashable, dict[str, Any], bytes]] = {}

    def get(
        self, kv: KeyValue, extra: Hashable, render: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> tuple[dict[str, Any], bytes]:
        hit = self._entries.get(kv.key)
        if hit is not None and hit[0] == kv.mod_revision and hit[1] == extra:
            return hit[2], hit[3]
        item = render(jsonio.loads(kv.value))
        frag = jsonio.dumps(item)
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[kv.key] = (kv.mod_revision, extra, item, frag)
        return item, frag


def rendered_list(
    deps: Deps,
    model: type[ProjectResource],
    render: Callable[[dict[str, Any], Any], dict[str, Any]],
    visible: Callable[[dict[str, Any]], bool],
    extra: Callable[[str], Hashable] = lambda _id: None,
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Every visible object of a kind, rendered (through the cache), and their JSON."""
    cache: RenderCache = deps.http().app.state.render
    items: list[dict[str, Any]] = []
    fragments: dict[str, bytes] = {}
    for kv in deps.store.range(model.prefix()).items:
        x = extra(kv.key.rsplit("/", 1)[1])
        item, frag = cache.get(kv, x, lambda d, x=x: render(d, x))
        if visible(item):
            items.append(item)
            fragments[item["id"]] = frag
    return items, fragments


def show_response(kind: str, item: dict[str, Any], request: Request) -> Response:
    fields = [f for v in request.query_params.getlist("fields") for f in v.split(",") if f]
    return json_response({kind: query.project_fields(item, fields)})


def make(model: type[M], **data: Any) -> M:
    """Construct a model from request data; a validation error is the caller's 400."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or model.KIND
        raise InvalidInput(f"Invalid input for {where}. Reason: {first.get('msg')}") from None


def evolve(obj: M, **changes: Any) -> M:
    """`bumped` with validation errors reported as 400."""
    from pydantic import ValidationError

    try:
        return bumped(obj, **changes)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or obj.KIND
        raise InvalidInput(f"Invalid input for {where}. Reason: {first.get('msg')}") from None


def make_id() -> str:
    from spanwire.model import new_id

    return new_id()
