"""Keystone v3 version documents and `/v3/auth/tokens` (issue, validate, revoke)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse

from spanwire.api.identity.records import DEFAULT_DOMAIN, Identity, Project, Token, User, iso
from spanwire.errors import InvalidInput, NotFound, Unauthorized

router = APIRouter(prefix="/identity", tags=["identity"])
MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def _version(request: Request) -> dict[str, Any]:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{request.base_url}identity/v3/"}],
        "media-types": MEDIA,
    }


@router.get("")
@router.get("/")
def versions(request: Request) -> JSONResponse:
    return JSONResponse({"versions": {"values": [_version(request)]}}, status_code=300)


@router.get("/v3")
@router.get("/v3/")
def version(request: Request) -> dict[str, Any]:
    return {"version": _version(request)}


def _dig(body: Any, *path: str) -> Any:
    """Walk nested dicts without ever raising on a malformed body."""
    for part in path:
        if not isinstance(body, dict):
            return None
        body = body.get(part)
    return body


def _domain_id(ref: Any) -> str:
    if isinstance(ref, dict):
        if isinstance(ref.get("id"), str):
            return str(ref["id"])
        if isinstance(ref.get("name"), str):
            if ref["name"].lower() != "default":
                raise Unauthorized(f"Could not find domain: {ref['name']}.")
            return "default"
    return "default"


def _resolve_user(identity: Identity, ref: Any) -> User:
    if not isinstance(ref, dict):
        raise InvalidInput("auth.identity.password.user is required")
    try:
        if isinstance(ref.get("id"), str):
            return identity.user(ref["id"])
        if isinstance(ref.get("name"), str):
            return identity.user_by_name(ref["name"], _domain_id(ref.get("domain")))
    except NotFound:
        raise Unauthorized("The request you have made requires authentication.") from None
    raise InvalidInput("auth.identity.password.user needs an id or a name")


def _resolve_project(identity: Identity, user: User, scope: Any) -> Project:
    ref = _dig(scope, "project")
    try:
        if isinstance(ref, dict) and isinstance(ref.get("id"), str):
            return identity.project(ref["id"])
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            return identity.project_by_name(ref["name"], _domain_id(ref.get("domain")))
    except NotFound:
        raise Unauthorized("The request you have made requires authentication.") from None
    if user.default_project_id:
        try:
            return identity.project(user.default_project_id)
        except NotFound:
            pass
    raise Unauthorized("spanwire issues project-scoped tokens only: give a project scope")


def token_body(request: Request, token: Token) -> dict[str, Any]:
    base = str(request.base_url)
    region = request.app.state.settings.region

    def service(kind: str, name: str, url: str) -> dict[str, Any]:
        endpoints = [
            {
                "id": f"{name}-{iface}",
                "interface": iface,
                "region": region,
                "region_id": region,
                "url": url,
            }
            for iface in ("public", "internal", "admin")
        ]
        return {"id": name, "type": kind, "name": name, "endpoints": endpoints}

    domain = dict(DEFAULT_DOMAIN)
    return {
        "token": {
            "methods": token.methods,
            "audit_ids": [token.audit_id],
            "expires_at": iso(token.expires_at),
            "issued_at": iso(token.issued_at),
            "user": {
                "id": token.user_id,
                "name": token.user_name,
                "domain": domain,
                "password_expires_at": None,
            },
            "project": {"id": token.project_id, "name": token.project_name, "domain": domain},
            "is_domain": False,
            "roles": [{"id": r, "name": r} for r in token.roles],
            "catalog": [
                service("network", "neutron", base.rstrip("/")),
                service("identity", "keystone", f"{base}identity"),
            ],
        }
    }


@router.post("/v3/auth/tokens", status_code=201)
def issue_token(
    request: Request, response: Response, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    identity: Identity = request.app.state.identity
    auth = _dig(body, "auth")
    methods = _dig(auth, "identity", "methods")
    if not isinstance(methods, list) or not methods:
        raise InvalidInput("auth.identity.methods must list 'password' or 'token'")
    if "password" in methods:
        user = _resolve_user(identity, _dig(auth, "identity", "password", "user"))
        password = _dig(auth, "identity", "password", "user", "password")
        if not isinstance(password, str):
            raise InvalidInput("auth.identity.password.user.password is required")
        identity.authenticate(user, password)
    elif "token" in methods:
        old = identity.validate(_dig(auth, "identity", "token", "id"))
        user = identity.user(old.user_id)
    else:
        raise Unauthorized(f"unsupported auth methods {methods}: use password or token")
    project = _resolve_project(identity, user, _dig(auth, "scope"))
    value, token = identity.issue(user, project, [m for m in methods if isinstance(m, str)])
    response.headers["X-Subject-Token"] = value
    return token_body(request, token)


@router.get("/v3/auth/tokens")
def check_token(request: Request, response: Response) -> dict[str, Any]:
    identity: Identity = request.app.state.identity
    identity.validate(request.headers.get("x-auth-token"))
    subject = request.headers.get("x-subject-token")
    token = identity.validate(subject)
    response.headers["X-Subject-Token"] = subject or ""
    return token_body(request, token)


@router.head("/v3/auth/tokens", status_code=200)
def head_token(request: Request) -> None:
    identity: Identity = request.app.state.identity
    identity.validate(request.headers.get("x-auth-token"))
    identity.validate(request.headers.get("x-subject-token"))


@router.delete("/v3/auth/tokens", status_code=204)
def revoke_token(request: Request) -> None:
    identity: Identity = request.app.state.identity
    identity.validate(request.headers.get("x-auth-token"))
    identity.revoke_token(request.headers.get("x-subject-token") or "")
