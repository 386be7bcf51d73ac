"""Options shared by several commands, so they read the same everywhere."""

from __future__ import annotations

import os
from typing import Annotated

import typer

DEFAULT_STATE_DIR = "/var/lib/spanwire"

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store URL: sqlite:///path/state.db or etcd://host:port[,host:port]. "
        "Default: $SPANWIRE_STORE, else sqlite:///var/lib/spanwire/state.db.",
    ),
]


def store_url(explicit: str | None) -> str:
    return explicit or os.environ.get("SPANWIRE_STORE") or (
        f"sqlite://{DEFAULT_STATE_DIR}/state.db"
    )


def ledger_store_url(explicit: str | None) -> str:
    """The ledger outlives testbeds, so standalone it has a file of its own."""
    if explicit or os.environ.get("SPANWIRE_STORE"):
        return store_url(explicit)
    os.makedirs(DEFAULT_STATE_DIR, exist_ok=True)
    return f"sqlite://{DEFAULT_STATE_DIR}/ledger.db"
