"""One frozen Settings built from the environment; the only reader of os.environ."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cronsim import CronSim, CronSimError

PREFIX = "MCSYNC_"
CRM_SCHEMES = ("mysql", "mysql+pymysql", "mariadb", "mariadb+pymysql")
DEFAULT_SYNC_SCHEDULE = "0 * * * *"  # every hour, on the hour (UTC), as the extension's job


_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@\s]*@", re.I)
_SECRET_PARAM = re.compile(r"(?P<name>[?&]secret=)[^&\s\"'<>]+", re.I)


def masked(text: str) -> str:
    """``text`` with the password of every URL in it, and every ``secret=`` parameter of a
    URL (our webhooks'), replaced by ``***``."""
    text = _CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", text)
    return _SECRET_PARAM.sub(r"\g<name>***", text)


class SettingsError(ValueError):
    """A configuration variable is malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Where everything lives. An empty URL means: use the embedded default."""

    database_url: str = ""
    crm_url: str = ""
    broker_url: str = ""
    redis_url: str = ""
    mailchimp_api_url: str = ""
    admin_token: str = ""
    webhook_base_url: str = ""
    data_dir: Path = Path(".mcsync")
    log_level: str = "INFO"
    log_format: str = "text"
    mailchimp_timeout: float = 60.0
    mailchimp_max_connections: int = 10
    batch_poll_seconds: float = 15.0
    stale_after_seconds: float = 900.0
    posting_grace_seconds: float = 600.0
    sync_schedule: str = DEFAULT_SYNC_SCHEDULE
    metrics_port: int = 9191

    @property
    def stale_after(self) -> timedelta:
        """A run whose heartbeat is older than this is taken over by the next trigger."""
        return timedelta(seconds=self.stale_after_seconds)

    @property
    def posting_grace(self) -> timedelta:
        """A batch left *posting* longer than this is resolved (adopted or released)."""
        return timedelta(seconds=self.posting_grace_seconds)

    @property
    def embedded_crm(self) -> bool:
        """The CRM is CiviCRM-shaped tables in our Postgres, not CiviCRM's own database."""
        return not self.crm_url

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from MCSYNC_* variables; raise SettingsError naming a bad one."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        return cls(
            database_url=reader.url("DATABASE_URL", ("postgresql", "postgresql+psycopg")),
            crm_url=reader.url("CRM_URL", CRM_SCHEMES),
            broker_url=reader.url("BROKER_URL", ("amqp", "amqps")),
            redis_url=reader.url("REDIS_URL", ("redis", "rediss", "unix")),
            mailchimp_api_url=reader.url("MAILCHIMP_API_URL", ("http", "https")),
            admin_token=reader.text("ADMIN_TOKEN"),
            webhook_base_url=reader.url("WEBHOOK_BASE_URL", ("http", "https")),
            data_dir=Path(reader.text("DATA_DIR") or ".mcsync"),
            log_level=reader.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
            log_format=reader.choice("LOG_FORMAT", ("TEXT", "JSON"), "TEXT").lower(),
            mailchimp_timeout=reader.positive_float("MAILCHIMP_TIMEOUT", 60.0),
            mailchimp_max_connections=reader.positive_int("MAILCHIMP_MAX_CONNECTIONS", 10),
            batch_poll_seconds=reader.positive_float("BATCH_POLL_SECONDS", 15.0),
            stale_after_seconds=reader.positive_float("STALE_AFTER_SECONDS", 900.0),
            posting_grace_seconds=reader.positive_float("POSTING_GRACE_SECONDS", 600.0),
            sync_schedule=reader.schedule("SYNC_SCHEDULE", DEFAULT_SYNC_SCHEDULE),
            metrics_port=reader.port("METRICS_PORT", 9191),
        )


@dataclass(frozen=True)
class _Reader:
    env: Mapping[str, str]

    def text(self, name: str) -> str:
        return self.env.get(PREFIX + name, "").strip()

    def url(self, name: str, schemes: tuple[str, ...]) -> str:
        value = self.text(name)
        if not value:
            return ""
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.netloc or parts.path or parts.query):
            raise SettingsError(
                f"{PREFIX}{name} must be a URL starting with one of "
                f"{', '.join(s + '://' for s in schemes)}; got {masked(value)!r}"
            )
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(name).upper() or default
        if value not in allowed:
            raise SettingsError(
                f"{PREFIX}{name} must be one of {', '.join(allowed)}; got {value!r}"
            )
        return value

    def positive_int(self, name: str, default: int) -> int:
        value = self.text(name)
        if not value:
            return default
        if not re.fullmatch(r"[1-9][0-9]*", value):
            raise SettingsError(f"{PREFIX}{name} must be a positive integer; got {value!r}")
        return int(value)

    def schedule(self, name: str, default: str) -> str:
        """A cron expression (five fields, UTC); set but empty: no schedule."""
        raw = self.env.get(PREFIX + name)
        if raw is None:
            return default
        value = " ".join(raw.split())
        if not value:
            return ""
        try:
            CronSim(value, datetime.now(UTC))
        except CronSimError as error:
            raise SettingsError(
                f"{PREFIX}{name} must be a cron expression such as '0 * * * *' (minute hour "
                f"day month weekday, UTC), or empty for no schedule; got {value!r} ({error})"
            ) from None
        return value

    def port(self, name: str, default: int) -> int:
        """A TCP port, or 0 for none."""
        value = self.text(name)
        if not value:
            return default
        if not re.fullmatch(r"[0-9]{1,5}", value) or int(value) > 65535:
            raise SettingsError(f"{PREFIX}{name} must be a port (1-65535), or 0; got {value!r}")
        return int(value)

    def positive_float(self, name: str, default: float) -> float:
        value = self.text(name)
        if not value:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not number > 0:
            raise SettingsError(f"{PREFIX}{name} must be a positive number; got {value!r}")
        return number
