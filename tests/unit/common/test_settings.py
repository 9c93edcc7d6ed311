from datetime import timedelta
from pathlib import Path

import pytest

from common.settings import Settings, SettingsError, masked


def test_nothing_set_means_the_embedded_default() -> None:
    settings = Settings.from_env({})

    assert settings.embedded_database
    assert settings.embedded_broker
    assert settings.redis_url == ""
    assert settings.data_dir == Path(".mcsync")


def test_production_urls_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "MCSYNC_DATABASE_URL": "postgresql+psycopg://sync@db:5432/sync",
            "MCSYNC_BROKER_URL": "amqp://guest:guest@rabbit:5672/",
            "MCSYNC_REDIS_URL": "redis://redis:6379/0",
            "MCSYNC_MAILCHIMP_API_URL": "http://127.0.0.1:8099/3.0",
            "MCSYNC_MAILCHIMP_MAX_CONNECTIONS": "8",
        }
    )

    assert not settings.embedded_database
    assert not settings.embedded_broker
    assert settings.broker_url == "amqp://guest:guest@rabbit:5672/"
    assert settings.mailchimp_api_url == "http://127.0.0.1:8099/3.0"
    assert settings.mailchimp_max_connections == 8


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MCSYNC_DATABASE_URL", "mysql://root@localhost/crm"),
        ("MCSYNC_BROKER_URL", "redis://localhost:6379"),
        ("MCSYNC_REDIS_URL", "localhost:6379"),
        ("MCSYNC_MAILCHIMP_API_URL", "ftp://example.org"),
        ("MCSYNC_LOG_LEVEL", "LOUD"),
        ("MCSYNC_MAILCHIMP_MAX_CONNECTIONS", "ten"),
        ("MCSYNC_MAILCHIMP_MAX_CONNECTIONS", "0"),
        ("MCSYNC_MAILCHIMP_TIMEOUT", "-5"),
        ("MCSYNC_BATCH_POLL_SECONDS", "often"),
        ("MCSYNC_STALE_AFTER_SECONDS", "0"),
        ("MCSYNC_POSTING_GRACE_SECONDS", "soon"),
    ],
)
def test_a_malformed_value_fails_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_settings_cannot_be_changed_after_start_up() -> None:
    settings = Settings.from_env({})

    with pytest.raises(AttributeError):
        settings.broker_url = "amqp://elsewhere"  # type: ignore[misc]


def test_the_stale_run_and_posting_grace_periods_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"MCSYNC_STALE_AFTER_SECONDS": "60", "MCSYNC_POSTING_GRACE_SECONDS": "30"}
    )
    assert (settings.stale_after, settings.posting_grace) == (
        timedelta(minutes=1),
        timedelta(seconds=30),
    )
    assert Settings().stale_after == timedelta(minutes=15)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://sync:pw@db:5432/sync", "postgresql://sync:***@db:5432/sync"),
        ("amqp://guest:guest@rabbit:5672/", "amqp://guest:***@rabbit:5672/"),
        ("redis://:pw@redis/0 and redis://redis/0", "redis://:***@redis/0 and redis://redis/0"),
        (
            "The URL https://x.org/mailchimp/webhook?secret=0123abc&a=1 failed",
            "The URL https://x.org/mailchimp/webhook?secret=***&a=1 failed",
        ),
        ("http://example.org/path", "http://example.org/path"),
    ],
)
def test_passwords_and_webhook_secrets_are_masked(text: str, shown: str) -> None:
    assert masked(text) == shown


def test_the_sync_schedule_is_hourly_unless_set_and_off_when_set_empty() -> None:
    assert Settings.from_env({}).sync_schedule == "0 * * * *"
    assert Settings.from_env({"MCSYNC_SYNC_SCHEDULE": "*/15  *  * * *"}).sync_schedule == (
        "*/15 * * * *"
    )
    assert Settings.from_env({"MCSYNC_SYNC_SCHEDULE": ""}).sync_schedule == ""


def test_a_malformed_schedule_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="MCSYNC_SYNC_SCHEDULE must be a cron expression"):
        Settings.from_env({"MCSYNC_SYNC_SCHEDULE": "every hour"})
