"""Tell a server that does not answer (an outage: wait and retry) from a bug (a traceback).

Periodic work, actors and the command line log an outage as one line naming what is down,
once per outage; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dramatiq.errors
import pika.exceptions
import psycopg
import redis.exceptions
import sqlalchemy.exc

DATABASE = "the database"
BROKER = "the broker"
REDIS = "Redis"

_KINDS: tuple[tuple[str, tuple[type[BaseException], ...]], ...] = (
    (BROKER, (dramatiq.errors.BrokerConnectionError, pika.exceptions.AMQPError)),
    (REDIS, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)),
)
# SQLSTATE classes of a database that went away: connection exceptions, operator
# intervention (shut down, restarted); a client-side failure to connect has none.
_DATABASE_GONE = ("08", "57")


def outage(error: BaseException) -> str | None:
    """What does not answer when ``error`` is a server not answering: ``the database``,
    ``the broker`` or ``Redis``; None when it is anything else (a deadlock or a refused
    statement is no outage). Looks through the chain of causes."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _database_gone(current):
            return DATABASE
        for what, types in _KINDS:
            if isinstance(current, types):
                return what
        current = current.__cause__ or current.__context__
    return None


def _database_gone(error: BaseException) -> bool:
    if isinstance(error, sqlalchemy.exc.DisconnectionError):
        return True
    if not isinstance(error, sqlalchemy.exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    original = error.orig
    if not isinstance(original, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = original.sqlstate
    return state is None or state.startswith(_DATABASE_GONE)
