"""Error types shared by every component.

They are mapped once to HTTP status codes and Neutron error bodies (api) and
once to CLI exit codes (cli); nothing else should invent its own error shape.
"""

from __future__ import annotations


class SpanwireError(Exception):
    """Base of every error spanwire raises on purpose."""

    http_status = 500
    neutron_type = "SpanwireError"
    exit_code = 1


class InvalidInput(SpanwireError):
    """The caller sent something malformed; the message says what to fix."""

    http_status = 400
    neutron_type = "BadRequest"
    exit_code = 2


class Unauthorized(SpanwireError):
    http_status = 401
    neutron_type = "NotAuthorized"
    exit_code = 3


class Forbidden(SpanwireError):
    http_status = 403
    neutron_type = "PolicyNotAuthorized"
    exit_code = 3


class NotFound(SpanwireError):
    http_status = 404
    neutron_type = "NotFound"
    exit_code = 4


class Conflict(SpanwireError):
    http_status = 409
    neutron_type = "Conflict"
    exit_code = 5


class Unavailable(SpanwireError):
    """A dependency (store, kernel feature, process) cannot be reached in bounded time."""

    http_status = 503
    neutron_type = "ServiceUnavailable"
    exit_code = 6


class Compacted(SpanwireError):
    """A watch asked for history the store no longer keeps.

    Recoverable: the caller re-lists the prefix and watches again from the
    revision the listing returned.
    """

    exit_code = 7

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} was compacted (oldest kept is {compact_revision}); "
            "re-list the prefix and watch from the listing's revision"
        )
        self.requested = requested
        self.compact_revision = compact_revision


class LeaseExpired(SpanwireError):
    """A lease is gone (expired or revoked); keys attached to it were deleted."""

    http_status = 409
    exit_code = 8
