"""The ASGI app factory: Neutron v2.0 + Keystone v3 on one store.

Errors are mapped here, once: spanwire errors to their status with Neutron's
error body, request validation to 400, unknown routes to 404 in the same
shape. Anything else is a bug; it is logged with the request path and
answered as a Neutron-shaped 500 rather than a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from spanwire import __version__
from spanwire.api import errors
from spanwire.api.allocation import UsedCache
from spanwire.api.identity.bootstrap import bootstrap_admin
from spanwire.api.identity.records import Identity
from spanwire.api.kvcache import KVCache
from spanwire.api.repo import RenderCache
from spanwire.api.settings import ApiSettings
from spanwire.errors import SpanwireError
from spanwire.store.base import Store

log = logging.getLogger("spanwire.api")
COLLECTIONS = (
    "networks",
    "subnets",
    "ports",
    "routers",
    "floatingips",
    "security_groups",
    "security_group_rules",
    "quotas",
    "extensions",
)


class StripJsonSuffix:
    """Old Neutron clients append `.json` to paths (`/v2.0/networks.json`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/v2.0/") and path.endswith(".json"):
            scope = dict(scope, path=path[: -len(".json")])
        await self.app(scope, receive, send)


def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = {404: "HTTPNotFound", 405: "HTTPMethodNotAllowed"}.get(exc.status_code, "HTTPError")
    body = {"NeutronError": {"type": kind, "message": str(exc.detail), "detail": ""}}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _bug(request: Request, exc: Exception) -> JSONResponse:
    log.exception("event=api.bug method=%s path=%s error=%r", request.method, request.url.path, exc)
    body = {"NeutronError": {"type": "InternalError", "message": "internal error", "detail": ""}}
    return JSONResponse(body, status_code=500)


def create_app(
    store: Store, settings: ApiSettings | None = None, admin_password: str | None = None
) -> FastAPI:
    """An app serving `store`; bootstraps the first admin when a password is given."""
    from spanwire.api import (
        extensions,
        floatingips,
        networks,
        ports,
        quotas,
        router_interfaces,
        routers,
        security_groups,
        subnets,
    )
    from spanwire.api.identity import admin, tokens

    settings = settings or ApiSettings()
    app = FastAPI(title="spanwire", version=__version__, docs_url=None, redoc_url=None)
    app.state.store = store
    app.state.settings = settings
    app.state.identity = Identity(store, token_ttl=settings.token_ttl)
    app.state.cache = UsedCache(store)
    app.state.kv = KVCache(store)
    app.state.render = RenderCache()
    app.add_exception_handler(SpanwireError, errors.spanwire_error_response)
    app.add_exception_handler(RequestValidationError, errors.validation_error_response)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _bug)
    app.add_middleware(StripJsonSuffix)

    @app.get("/", tags=["versions"])
    def versions(request: Request) -> dict[str, Any]:
        return {
            "versions": [
                {
                    "id": "v2.0",
                    "status": "CURRENT",
                    "links": [{"rel": "self", "href": f"{request.base_url}v2.0/"}],
                }
            ]
        }

    @app.get("/v2.0", tags=["versions"])
    @app.get("/v2.0/", tags=["versions"])
    def resources(request: Request) -> dict[str, Any]:
        return {
            "resources": [
                {
                    "name": c.rstrip("s"),
                    "collection": c,
                    "links": [{"rel": "self", "href": f"{request.base_url}v2.0/{c}"}],
                }
                for c in COLLECTIONS
            ]
        }

    # Busiest first: FastAPI tries routes in order, and matching every route of
    # the identity routers before reaching ports was a tenth of a port create's
    # CPU. No two routers share a path, so the order changes nothing else.
    for module in (
        ports,
        networks,
        subnets,
        security_groups,
        floatingips,
        routers,
        router_interfaces,
        quotas,
        extensions,
        tokens,
        admin,
    ):
        app.include_router(module.router)
    if admin_password is not None:
        bootstrap_admin(app.state.identity, admin_password)
    return app
