"""`spanwire serve`: one stateless API replica (Neutron v2.0 + Keystone v3) on a store."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from spanwire.cli.errors import friendly
from spanwire.errors import InvalidInput

PASSWORD_ENV = "SPANWIRE_ADMIN_PASSWORD"


def admin_password(password_file: Path | None) -> str:
    """The bootstrap admin password: never a built-in default."""
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as exc:
            raise InvalidInput(
                f"cannot read --admin-password-file {password_file}: {exc}"
            ) from None
    else:
        password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise InvalidInput(
            f"no admin password: set {PASSWORD_ENV} or pass --admin-password-file "
            "(spanwire has no built-in default password)"
        )
    return password


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"--listen {listen!r}: use HOST:PORT, e.g. 127.0.0.1:9696")
    return host, int(port)


def parse_vni_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    if not sep or not lo.isdigit() or not hi.isdigit():
        raise InvalidInput(f"--vni-range {text!r}: use MIN:MAX, e.g. 1:16777215")
    return int(lo), int(hi)


def serve_argv(store_url: str, listen: str, *extra: str) -> list[str]:
    """The command line of one `spanwire serve` replica (testbed, tests and bench start them)."""
    return [sys.executable, "-m", "spanwire.cli.main", "serve", "--store", store_url,
            "--listen", listen, *extra]


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly
    def serve(
        store: Annotated[str, typer.Option("--store", help="sqlite:///path or etcd://h:p[,h:p]")],
        listen: Annotated[str, typer.Option("--listen", help="HOST:PORT")] = "127.0.0.1:9696",
        admin_password_file: Annotated[
            Path | None,
            typer.Option(
                "--admin-password-file",
                help=f"file with the first admin's password (else env {PASSWORD_ENV})",
            ),
        ] = None,
        vni_range: Annotated[
            str, typer.Option("--vni-range", help="tenant VXLAN VNI range MIN:MAX")
        ] = "1:16777215",
        token_ttl: Annotated[
            int, typer.Option("--token-ttl", min=60, help="token lifetime (s)")
        ] = 3600,
        log_level: Annotated[str, typer.Option("--log-level")] = "info",
    ) -> None:
        """Serve the Neutron v2.0 API and a minimal Keystone v3 (stateless; run many)."""
        import uvicorn

        from spanwire.api.app import create_app
        from spanwire.api.settings import ApiSettings
        from spanwire.store import connect

        password = admin_password(admin_password_file)
        host, port = parse_listen(listen)
        lo, hi = parse_vni_range(vni_range)
        try:
            settings = ApiSettings(vni_min=lo, vni_max=hi, token_ttl=token_ttl)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        logging.basicConfig(
            level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
        backend = connect(store)
        try:
            app = create_app(backend, settings, admin_password=password)
            logging.getLogger("spanwire.api").info(
                "event=serve.start listen=%s store=%s", listen, backend.url
            )
            uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
        finally:
            backend.close()
