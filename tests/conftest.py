"""Fixtures shared by every test folder: real processes, always torn down by PID."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from spanwire.store.etcd_server import ETCD_BINARY, EtcdCluster

HAVE_ETCD = os.access(ETCD_BINARY, os.X_OK)


@pytest.fixture(scope="session")
def etcd_member() -> Iterator[EtcdCluster]:
    """One real etcd member on free loopback ports for the whole run (tests use own prefixes)."""
    if not HAVE_ETCD:
        pytest.skip(f"{ETCD_BINARY} not installed (Debian package etcd-server)")
    cluster = EtcdCluster(size=1)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
