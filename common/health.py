"""Readiness: can this process do its work now? What it needs must answer.

Every process checks Postgres (it answers, and its schema is at the code's migration head)
and, with RabbitMQ, the broker (a connection can be opened), plus the periodic work it runs
(``common.periodic``: its last try worked). A problem is one line naming what and where,
passwords masked.
"""

from __future__ import annotations

from collections.abc import Iterable

import pika
import pika.exceptions
import sqlalchemy as sa

from common.db import migrate
from common.outages import describe
from common.periodic import Periodic
from common.settings import Settings, masked

PROBE_TIMEOUT = 3.0  # seconds a server has to answer a probe


def database_problem(engine: sa.Engine) -> str | None:
    """None when Postgres answers and its schema is current; else what is wrong."""
    where = masked(engine.url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            at = migrate.current_on(conn)
    except sa.exc.SQLAlchemyError as error:
        return f"the database at {where}: {describe(error)}"
    return migrate.behind(at, where)


def broker_problem(settings: Settings) -> str | None:
    """None when the broker answers (always, embedded); else what is wrong."""
    if settings.embedded_broker:
        return None
    parameters = pika.URLParameters(settings.broker_url)
    parameters.socket_timeout = PROBE_TIMEOUT
    parameters.blocked_connection_timeout = PROBE_TIMEOUT
    parameters.connection_attempts = 1
    try:
        pika.BlockingConnection(parameters).close()
    except (pika.exceptions.AMQPError, OSError) as error:
        reason = str(error) or type(error).__name__
        return f"the broker at {masked(settings.broker_url)} does not answer ({reason})"
    return None


def problems(engine: sa.Engine, settings: Settings, periodic: Iterable[Periodic] = ()) -> list[str]:
    """Why this process is not ready (empty: ready)."""
    found = [database_problem(engine), broker_problem(settings)]
    found += [f"{work.name} is failing" for work in periodic if not work.healthy]
    return [problem for problem in found if problem]
