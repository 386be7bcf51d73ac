"""A short qualification on the real kernel: a healthy cloud passes, a broken one fails
and the report names the broken path class."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spanwire.dataplane import netns, process
from spanwire.qualify import underlay
from spanwire.qualify.ledger import Ledger
from spanwire.qualify.lifecycle import State
from spanwire.qualify.run import QualifyOptions, qualify
from spanwire.qualify.testbed import Testbed
from spanwire.qualify.topology import Topology
from spanwire.store import connect

pytestmark = [
    pytest.mark.root,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]


@pytest.fixture
def bed_dir() -> Iterator[str]:
    """World-traversable, because dnsmasq (user nobody) reads its lease files from it."""
    base = tempfile.mkdtemp(prefix="spanwire-qualify-")
    os.chmod(base, 0o755)
    try:
        yield os.path.join(base, "bed")
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ledger(tmp_path: Path):
    store = connect(f"sqlite:///{tmp_path}/ledger.db")
    try:
        yield Ledger(store)
    finally:
        store.close()


def test_short_qualification_passes_and_records_the_snapshot(bed_dir: str, ledger: Ledger):
    opts = QualifyOptions(nodes=2, state_dir=bed_dir, rounds=3, seconds=1)
    doc = qualify(opts, ledger)
    assert doc["passed"], doc["failures"]
    classes = {p["path_class"] for p in doc["connectivity"]["probes"]}
    assert classes == {"same-node", "cross-node", "cross-subnet", "cross-project",
                       "sg-allowed", "sg-denied", "floating-ip", "snat"}
    assert set(doc["bandwidth"]["classes"]) == {"same-node", "cross-node", "cross-subnet",
                                                 "floating-ip", "snat"}
    assert all(r["ok"] for r in doc["failover"])
    assert doc["snapshot"]["state"] == State.EXPERIMENTAL.value
    assert netns.list_names(doc["testbed_prefix"] + "-") == []  # torn down


def break_cross_node(bed: Testbed, topo: Topology) -> None:
    """What a bad release might do: one node's agent dies and its underlay route is lost."""
    del topo
    node = sorted(bed.state.nodes)[1]
    bed.stop_agent(node)
    process.run(underlay.node_ns(bed.state.prefix, node), ["ip", "route", "flush", "dev", "ul0"],
                check=False)


def test_broken_data_plane_fails_and_names_the_path_class(bed_dir: str, ledger: Ledger):
    opts = QualifyOptions(nodes=2, state_dir=bed_dir, suites=("connectivity",),
                          sabotage=break_cross_node)
    doc = qualify(opts, ledger)
    assert not doc["passed"]
    assert any("cross-node" in f for f in doc["failures"]), doc["failures"]
    assert not any("same-node" in f for f in doc["failures"]), doc["failures"]
    assert doc["snapshot"]["state"] == State.REJECTED.value


def drop_nat_on_first_node(bed: Testbed, topo: Topology) -> None:
    """A release that forgets the NAT tables on one node (and whose agent is gone)."""
    del topo
    node = sorted(bed.state.nodes)[0]
    bed.stop_agent(node)
    node_ns = underlay.node_ns(bed.state.prefix, node)
    for ns in netns.list_names(node_ns + "-r"):
        process.run(ns, ["nft", "delete", "table", "inet", "spanwire_nat"], check=False)


def test_broken_nat_fails_the_north_south_classes_only(bed_dir: str, ledger: Ledger):
    opts = QualifyOptions(nodes=2, state_dir=bed_dir, suites=("connectivity",),
                          sabotage=drop_nat_on_first_node)
    doc = qualify(opts, ledger)
    assert not doc["passed"]
    named = " ".join(doc["failures"])
    assert "floating-ip" in named and "snat" in named, doc["failures"]
    assert not any(c in named for c in ("cross-node", "same-node", "cross-subnet")), named


@pytest.mark.etcd
@pytest.mark.skipif(not os.path.exists("/usr/bin/etcd"), reason="needs Debian's etcd-server")
def test_failover_on_a_three_member_etcd(bed_dir: str, ledger: Ledger):
    """Killing an etcd member, an agent or the api costs the data plane nothing."""
    opts = QualifyOptions(nodes=2, state_dir=bed_dir, suites=("failover",), etcd_members=3)
    doc = qualify(opts, ledger)
    faults = {r["fault"]: r for r in doc["failover"]}
    assert any(f.startswith("etcd member killed (SIGKILL)") for f in faults), doc["failures"]
    assert doc["passed"], doc["failures"]
    assert all(r["lost"] == 0 for r in faults.values())
