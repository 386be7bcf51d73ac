"""`spanwire store status | ls | watch` against real stores."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from spanwire.cli.main import app
from spanwire.cli.store import preview
from spanwire.store import connect
from spanwire.store.etcd_server import EtcdCluster

runner = CliRunner()


def test_status_and_ls_on_sqlite(tmp_dir: Path) -> None:
    url = f"sqlite://{tmp_dir}/state.db"
    with connect(url) as store:
        store.put("/spanwire/v1/networks/net-1", b'{"name": "blue"}')
        store.put("/spanwire/v1/networks/net-2", b"\x00\xff")
    result = runner.invoke(app, ["store", "status", "--store", url])
    assert result.exit_code == 0, result.output
    assert "sqlite" in result.output and "revision" in result.output
    result = runner.invoke(
        app,
        ["store", "ls", "/spanwire/v1/networks/"],
        env={"SPANWIRE_STORE": url, "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "net-1" in result.output and '{"name": "blue"}' in result.output
    assert "<2 bytes>" in result.output and "2 keys" in result.output


@pytest.mark.etcd
def test_status_on_etcd_shows_members(etcd_member: EtcdCluster) -> None:
    result = runner.invoke(
        app, ["store", "status", "--store", etcd_member.url], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "healthy" in result.output and "leader" in result.output


def test_errors_are_one_line_with_exit_codes() -> None:
    result = runner.invoke(app, ["store", "ls", "--store", "mysql://x"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = runner.invoke(app, ["store", "status", "--store", "etcd://127.0.0.1:1"])
    assert result.exit_code == 6 and "127.0.0.1:1" in result.output


def test_preview() -> None:
    assert preview(b"plain") == "plain"
    assert preview(b"x" * 100).endswith("…")
    assert preview(b"\x00\x01").startswith("<2 bytes>")
