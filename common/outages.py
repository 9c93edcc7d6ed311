"""Tell a server that does not answer (an outage: wait and retry) from a bug (a traceback).

Periodic work, actors and the command line log an outage as one line naming what is down,
once per outage (``FailureLog``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import threading
import time

import dramatiq.errors
import pika.exceptions
import psycopg
import pymysql
import redis.exceptions
import sqlalchemy.exc

DATABASE = "the database"
BROKER = "the broker"
REDIS = "Redis"
CRM = "the CRM"

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
        if _crm_gone(current):
            return CRM
        for what, types in _KINDS:
            if isinstance(current, types):
                return what
        current = current.__cause__ or current.__context__
    return None


# MySQL's client errors of a server that does not answer or went away.
_CRM_GONE = (2003, 2005, 2006, 2013)


def _crm_gone(error: BaseException) -> bool:
    """CiviCRM's MySQL/MariaDB does not answer (``MCSYNC_CRM_URL``)."""
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        error = error.orig or error
    if not isinstance(error, pymysql.err.OperationalError):
        return False
    return bool(error.args) and error.args[0] in _CRM_GONE


def _database_gone(error: BaseException) -> bool:
    if isinstance(error, sqlalchemy.exc.DisconnectionError):
        return True
    if not isinstance(error, sqlalchemy.exc.DBAPIError):
        return False
    if isinstance(error.orig, pymysql.err.Error):
        return False  # the CRM's
    if error.connection_invalidated:
        return True
    original = error.orig
    if not isinstance(original, psycopg.OperationalError | psycopg.InterfaceError):
        return False
    state = original.sqlstate
    return state is None or state.startswith(_DATABASE_GONE)


def describe(error: BaseException) -> str:
    """One line for a failure: what does not answer, or the error itself."""
    what = outage(error)
    return f"{what} does not answer ({error})" if what else str(error) or repr(error)


class FailureLog:
    """Logs a run of failures of work repeated often (a periodic task, a message sent every
    tick) once when it starts, with a traceback only for a bug, and once when the work runs
    again; the failures in between go to debug. Thread-safe."""

    def __init__(self, name: str, logger: logging.Logger) -> None:
        self.name = name
        self.logger = logger
        self.failures = 0
        self.failing_since: float | None = None  # time.monotonic() of the first failure
        self._lock = threading.Lock()

    def failed(self, error: BaseException) -> None:
        with self._lock:
            self.failures += 1
            first = self.failing_since is None
            if first:
                self.failing_since = time.monotonic()
        if not first:
            self.logger.debug("%s still failing (%d tries): %s", self.name, self.failures, error)
            return
        self.logger.warning(
            "%s failed: %s; trying again, logged again once it works",
            self.name,
            describe(error),
            exc_info=outage(error) is None,  # a bug keeps its traceback; an outage is one line
        )

    def worked(self) -> None:
        if self.failing_since is None:
            return  # the common case, without the lock
        with self._lock:
            since, failures = self.failing_since, self.failures
            self.failing_since, self.failures = None, 0
        if since is not None:
            lasted = time.monotonic() - since
            self.logger.info(
                "%s works again, after %d failed tries over %.0f s", self.name, failures, lasted
            )
