"""Neutron's named errors, as subclasses of spanwire's error types.

Neutron clients (and tests written against Neutron) look at the `type` of the
error body, so the common ones carry Neutron's exact names. The mapping to an
HTTP status stays with the base classes in `spanwire.errors`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from spanwire.errors import Conflict, InvalidInput, NotFound, SpanwireError

log = logging.getLogger("spanwire.api")


class OverQuota(Conflict):
    neutron_type = "OverQuota"


class IpAddressGenerationFailure(Conflict):
    neutron_type = "IpAddressGenerationFailure"


class IpAddressAlreadyAllocated(Conflict):
    neutron_type = "IpAddressAlreadyAllocated"


class InUse(Conflict):
    """Something still uses the object (NetworkInUse, SubnetInUse, RouterInUse...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.neutron_type = f"{kind}InUse"


class Retry(Conflict):
    """A store transaction lost a race too many times; the client may retry."""

    neutron_type = "Conflict"


_KIND_NAMES = {
    "networks": "Network",
    "subnets": "Subnet",
    "ports": "Port",
    "routers": "Router",
    "floatingips": "FloatingIP",
    "security_groups": "SecurityGroup",
    "security_group_rules": "SecurityGroupRule",
}


def not_found(kind: str, resource_id: str) -> NotFound:
    """Neutron's `<Kind>NotFound` with its usual message."""
    name = _KIND_NAMES.get(kind, kind)
    err = NotFound(f"{name} {resource_id} could not be found.")
    err.neutron_type = f"{name}NotFound"
    return err


def bad_request(message: str) -> InvalidInput:
    return InvalidInput(message)


def neutron_body(exc: SpanwireError) -> dict[str, Any]:
    return {"NeutronError": {"type": exc.neutron_type, "message": str(exc), "detail": ""}}


def spanwire_error_response(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpanwireError)
    status = exc.http_status if exc.http_status != 500 else 409
    if status >= 500:
        log.warning(
            "event=api.unavailable method=%s path=%s error=%s",
            request.method,
            request.url.path,
            exc,
        )
    return JSONResponse(neutron_body(exc), status_code=status)


def validation_error_response(_: Request, exc: Exception) -> JSONResponse:
    """Pydantic's 422 becomes Neutron's 400 with a message naming the attribute."""
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        if err.get("type") == "extra_forbidden":
            parts.append(f"Unrecognized attribute(s) '{loc.rsplit('.', 1)[-1]}'")
        else:
            parts.append(f"Invalid input for {loc}. Reason: {err.get('msg')}")
    body = {"NeutronError": {"type": "HTTPBadRequest", "message": "; ".join(parts), "detail": ""}}
    return JSONResponse(body, status_code=400)
