"""Logging for every process: text for people, or one JSON object per line for a log stack.

``MCSYNC_LOG_FORMAT=json`` writes each record as a JSON object with its time, level,
logger and message, the audience id, run id and stage bound to the message being handled
(``bound``), and a traceback only when the record carries one (a bug).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

FIELDS = ("audience_id", "run_id", "stage")
_BOUND: dict[str, contextvars.ContextVar[str | None]] = {
    name: contextvars.ContextVar(name, default=None) for name in FIELDS
}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Within the block, records of this thread carry these of ``FIELDS`` (None: unset)."""
    tokens = [(_BOUND[name], _BOUND[name].set(value)) for name, value in fields.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def bind(**fields: str | None) -> None:
    """Bind fields until the enclosing ``bound`` block ends (a handler moving on a stage)."""
    for name, value in fields.items():
        _BOUND[name].set(value)


class BoundFields(logging.Filter):
    """Puts the bound fields on each record (None where unbound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _BOUND.items():
            setattr(record, name, var.get())
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, log_format: str, quiet: tuple[str, ...] = ()) -> None:
    """The root logger writes to stderr, as text or JSON lines; ``quiet`` libraries log
    warnings and worse only (all of it at DEBUG)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(BoundFields())
    handler.setFormatter(JsonLines() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if level != "DEBUG":
        for name in quiet:
            logging.getLogger(name).setLevel(logging.WARNING)
