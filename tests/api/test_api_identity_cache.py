"""The per-replica token cache the auth dependency reads without leaving the event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from spanwire.api.identity.bootstrap import bootstrap_admin
from spanwire.api.identity.records import Identity
from spanwire.errors import Unauthorized
from spanwire.store import connect


def test_cached_knows_only_tokens_validated_here_and_forgets_revoked_ones(
    tmp_path: Path,
) -> None:
    store = connect(f"sqlite:///{tmp_path}/state.db")
    try:
        identity = Identity(store)
        bootstrap_admin(identity, "pw-cache-test")
        user, project = identity.user_by_name("admin"), identity.project_by_name("admin")
        value, _ = identity.issue(user, project, ["password"])
        assert identity.cached(None) is None
        assert identity.cached(value) is None, "not validated here yet: the store must be asked"
        token = identity.validate(value)
        assert identity.cached(value) == token
        identity.revoke_token(value)
        assert identity.cached(value) is None
        with pytest.raises(Unauthorized):
            identity.validate(value)
    finally:
        store.close()
