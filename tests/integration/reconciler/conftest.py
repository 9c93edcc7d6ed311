"""Fixtures for the reconciler's stage tests."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from reconciler_support import World


@pytest.fixture
def world(db: sa.Connection) -> World:
    return World(db, interests=1)
