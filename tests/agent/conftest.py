"""Fixtures that build real testbeds (root) and always tear them down."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from spanwire.qualify.testbed import Testbed


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")


def make_state_dir() -> str:
    """Our own world-traversable dir: dnsmasq runs as nobody, and pytest's basetemp
    (0700, pruned by concurrent pytest sessions) is neither readable nor stable."""
    path = tempfile.mkdtemp(prefix="spanwire-test-")
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="module")
def bed() -> Iterator[Testbed]:
    """A 3-node cloud without the api (model objects go straight into the store)."""
    need_root()
    state_dir = make_state_dir()
    try:
        testbed = Testbed.up(state_dir, nodes=3, api=False)
        try:
            yield testbed
        finally:
            testbed.down()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
