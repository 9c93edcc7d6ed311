"""Build the SQLAlchemy engine from Settings; nothing is built at import time."""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from psycopg.types.json import set_json_loads

from common.embedded import embedded_postgres_url, to_sqlalchemy_url
from common.settings import Settings

POOL_SIZE = 5
MAX_OVERFLOW = 5
POOL_RECYCLE_SECONDS = 1800
# Session settings for the stages' set-based statements: JIT compiling costs half a second on
# every big statement (their estimates look huge) and never pays back on one execution; the
# default 4 MB work_mem sends a 100,000-row sort or hash to disk.
SESSION_OPTIONS = "-c jit=off -c work_mem=64MB"


def database_url(settings: Settings) -> str:
    """The configured database URL, or the embedded Postgres under ``settings.data_dir``."""
    if settings.database_url:
        return to_sqlalchemy_url(settings.database_url)
    return embedded_postgres_url(settings.data_dir)


def create_engine(url: str) -> sa.Engine:
    """An engine on psycopg 3 with a small pool that checks connections before use.

    Workers are processes with few threads each, so a small pool is enough; ``pool_pre_ping``
    survives a restarted server and ``pool_recycle`` idle connections cut by a proxy.
    """
    engine = sa.create_engine(
        to_sqlalchemy_url(url),
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_pre_ping=True,
        pool_recycle=POOL_RECYCLE_SECONDS,
        connect_args={"options": SESSION_OPTIONS},
    )
    sa.event.listen(engine, "connect", _parse_json_with_orjson)
    return engine


def _parse_json_with_orjson(dbapi_connection: object, _record: object) -> None:
    """jsonb results parsed by orjson: a chunk reads a thousand members' data, and the
    standard library's parser was a tenth of the reconciler's time."""
    set_json_loads(orjson.loads, dbapi_connection)  # type: ignore[arg-type]
