"""Fixtures for the reconciler's stage tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from reconciler_support import World


@pytest.fixture
def world(db: sa.Connection) -> World:
    return World(db, interests=1)


@pytest.fixture
def statements(db: sa.Connection) -> Iterator[list[str]]:
    """The SQL statements sent on ``db`` while the test runs (an executemany counts once)."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        sent.append(args[2])

    sa.event.listen(db, "before_cursor_execute", record)
    yield sent
    sa.event.remove(db, "before_cursor_execute", record)
