"""The engine and the database URL, built from Settings without touching a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.db import engine as db_engine
from common.settings import Settings


def test_database_url_uses_the_configured_url_on_psycopg_3() -> None:
    settings = Settings(database_url="postgresql://app@db.example:5432/mcsync")

    assert db_engine.database_url(settings) == "postgresql+psycopg://app@db.example:5432/mcsync"


def test_database_url_falls_back_to_the_embedded_postgres_in_the_data_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[Path] = []

    def fake_embedded(data_dir: Path) -> str:
        started.append(data_dir)
        return "postgresql+psycopg://postgres:@/postgres?host=/somewhere"

    monkeypatch.setattr(db_engine, "embedded_postgres_url", fake_embedded)

    url = db_engine.database_url(Settings(data_dir=Path("/data")))

    assert url == "postgresql+psycopg://postgres:@/postgres?host=/somewhere"
    assert started == [Path("/data")]


def test_create_engine_drives_a_plain_postgresql_url_with_psycopg_3() -> None:
    engine = db_engine.create_engine("postgresql://app@db.example:5432/mcsync")

    assert engine.dialect.driver == "psycopg"
    assert engine.pool._pre_ping
    engine.dispose()
