"""Fixtures for the reconciler's stage tests: a World on each CRM (``CRMS``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from civicrm_support import CRMS, CiviCrmTables, civicrm_database
from reconciler_support import CiviSide, World

from common.crm.civicrm import crm_engine
from common.crm.writes import CiviCrm

CIVICRM_DATABASE = "mcsync_reconciler_test"


@pytest.fixture(scope="session")
def civicrm_engine() -> Iterator[sa.Engine]:
    """A CiviCRM database shared by the reconciler's tests (emptied by each)."""
    with civicrm_database(CIVICRM_DATABASE) as url:
        engine = crm_engine(url)
        yield engine
        engine.dispose()


@pytest.fixture(params=CRMS)
def crm_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def civi(crm_kind: str, request: pytest.FixtureRequest) -> Iterator[CiviSide | None]:
    """CiviCRM for a World on it; None for the embedded CRM."""
    if crm_kind == "embedded":
        yield None
        return
    engine: sa.Engine = request.getfixturevalue("civicrm_engine")
    tables = CiviCrmTables(CIVICRM_DATABASE)
    tables.empty()
    # Autocommit: each read sees the rows the test wrote since (no snapshot held).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        yield CiviSide(tables, conn, CiviCrm(engine))
    tables.empty()


@pytest.fixture
def world(db: sa.Connection, civi: CiviSide | None) -> World:
    return World(db, interests=1, civi=civi)
