"""Create the first admin (user `admin`, project `admin`, domain Default) once.

Idempotent and race-safe: name keys are created with Compare.absent, so two
replicas starting together end with one admin. An existing admin keeps its
password; a replica started with a different one logs a warning.
"""

from __future__ import annotations

import logging

from spanwire.api.identity.records import Identity
from spanwire.errors import Conflict, NotFound, Unauthorized

log = logging.getLogger("spanwire.api.identity")


def bootstrap_admin(identity: Identity, password: str) -> None:
    try:
        project = identity.create_project("admin", description="Bootstrap admin project")
    except Conflict:
        project = identity.project_by_name("admin")
    try:
        user = identity.create_user("admin", password, default_project_id=project.id)
    except Conflict:
        user = identity.user_by_name("admin")
        try:
            identity.authenticate(user, password)
        except Unauthorized:
            log.warning(
                "event=bootstrap.password_mismatch user_id=%s: the existing admin "
                "keeps its password",
                user.id,
            )
    try:
        identity.grant(project.id, user.id, "admin")
    except NotFound:  # deleted concurrently; the next start repairs it
        log.warning("event=bootstrap.grant_failed user_id=%s project_id=%s", user.id, project.id)
    log.info("event=bootstrap.done user_id=%s project_id=%s", user.id, project.id)
