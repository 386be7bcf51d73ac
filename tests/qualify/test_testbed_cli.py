"""`spanwire up` / `vm` / `down` through the CLI, including cleanup after a crash."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile

import pytest
from typer.testing import CliRunner

from spanwire.cli.main import app
from spanwire.dataplane import netns, process
from spanwire.qualify import cloud
from spanwire.qualify.testbed import Testbed, TestbedState

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def state_dir() -> str:  # type: ignore[misc]
    if os.geteuid() != 0:
        pytest.skip("needs root")
    base = tempfile.mkdtemp(prefix="spanwire-cli-")
    os.chmod(base, 0o755)
    path = os.path.join(base, "state")
    try:
        yield path
    finally:
        state = TestbedState.load(path)
        if state is not None:
            Testbed(state).down()
        shutil.rmtree(base, ignore_errors=True)


def _leftovers(prefix: str) -> list[str]:
    return netns.list_names(prefix + "-")


def test_up_vm_down_and_down_again(state_dir: str) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["up", "--nodes", "2", "--no-api", "--state-dir", state_dir])
    assert result.exit_code == 0, result.output
    state = TestbedState.load(state_dir)
    # underlay (with the provider bridge), the outside host, 2 nodes
    assert state is not None and len(_leftovers(state.prefix)) == 4
    result = runner.invoke(app, ["outside", "--state-dir", state_dir, "--", "ip", "-4", "-o",
                                 "addr", "show", "eth0"])
    assert result.exit_code == 0 and "203.0.113.1/24" in result.output, result.output
    assert runner.invoke(app, ["outside", "--state-dir", state_dir]).exit_code != 0
    bed = Testbed.attach(state_dir)
    cloud.add_network(bed.store(), "demo", vni=6001, cidr="10.60.0.0/24")
    for name, node in (("vm1", "node1"), ("vm2", "node2")):
        result = runner.invoke(app, ["vm", "create", "--state-dir", state_dir, "--network",
                                     "demo", "--node", node, name])
        assert result.exit_code == 0, result.output
        assert "mtu 1450" in result.output
    ip2 = result.output.split(" ip ")[1].split("/")[0]
    result = runner.invoke(app, ["vm", "exec", name := "vm1", "--state-dir", state_dir, "--",
                                 "ping", "-c", "2", "-i", "0.2", ip2])
    assert result.exit_code == 0, (name, result.output)
    assert runner.invoke(app, ["down", "--state-dir", state_dir]).exit_code == 0
    assert _leftovers(state.prefix) == []
    assert not os.path.exists(state_dir)
    assert runner.invoke(app, ["down", "--state-dir", state_dir]).exit_code == 0


def test_down_after_crash_removes_everything(state_dir: str) -> None:
    bed = Testbed.up(state_dir, nodes=2, api=False)
    cloud.add_network(bed.store(), "crash", vni=6002, cidr="10.61.0.0/24")
    bed.vm_create("crash", "c1", node="node1")
    prefix = bed.state.prefix
    # crash: agents killed hard, our process forgets everything it knew
    for key, pid in bed.state.pids.items():
        assert key.startswith("agent-")
        os.killpg(pid, signal.SIGKILL)
    dnsmasqs = process.pids_in(_leftovers(prefix))
    assert dnsmasqs  # DHCP keeps running without its agent
    del bed
    result = CliRunner().invoke(app, ["down", "--state-dir", state_dir])
    assert result.exit_code == 0, result.output
    assert _leftovers(prefix) == []
    assert all(process.cmdline(pid) in (None, ()) for pid in dnsmasqs)
    assert not os.path.exists(state_dir)
