"""Store fixtures: every conformance test runs once per backend."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import Backend

from spanwire.store import Store, connect
from spanwire.store.etcd_server import EtcdCluster


@pytest.fixture
def tmp_dir() -> Iterator[Path]:
    """Like tmp_path, but removed at teardown (pytest keeps tmp_path dirs around)."""
    path = Path(tempfile.mkdtemp(prefix="spanwire-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.etcd)])
def backend(request: pytest.FixtureRequest, tmp_dir: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite://{tmp_dir}/state.db")
    cluster: EtcdCluster = request.getfixturevalue("etcd_member")
    return Backend("etcd", cluster.url, cluster)


@pytest.fixture
def store_url(backend: Backend) -> str:
    return backend.url


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    s = connect(backend.url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix, so tests sharing one etcd member never see each other's keys."""
    return f"/spanwire/test/{uuid.uuid4().hex[:12]}/"
