"""What one worker process holds: built from Settings when the process starts, not at import."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import dramatiq
import redis
import sqlalchemy as sa

from common.broker import send
from common.crm.civicrm import crm_engine
from common.crm.writes import EMBEDDED, CiviCrm, CrmWrites
from common.db.engine import create_engine, database_url
from common.limits import ConnectionLimiter, LocalConnectionLimiter, RedisConnectionLimiter
from common.mailchimp import MailchimpClient
from common.messages import Message
from common.settings import Settings


@dataclass
class MailchimpClients:
    """One pooled client per API key, built on first use and shared by a process's threads,
    every one taking its connections from the same limiter."""

    settings: Settings
    limiter: ConnectionLimiter
    _clients: dict[str, MailchimpClient] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, api_key: str) -> MailchimpClient:
        with self._lock:
            client = self._clients.get(api_key)
            if client is None:
                client = MailchimpClient(
                    api_key,
                    base_url=self.settings.mailchimp_api_url,
                    timeout=self.settings.mailchimp_timeout,
                    max_connections=self.settings.mailchimp_max_connections,
                    limiter=self.limiter,
                )
                self._clients[api_key] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


@dataclass
class Runtime:
    """The engine, the broker, Mailchimp clients and the connection limiter of a process."""

    settings: Settings
    engine: sa.Engine
    broker: dramatiq.Broker
    limiter: ConnectionLimiter
    _clients: MailchimpClients = field(init=False)
    crm: CrmWrites = field(init=False)

    def __post_init__(self) -> None:
        self._clients = MailchimpClients(self.settings, self.limiter)
        url = self.settings.crm_url
        self.crm = CiviCrm(crm_engine(url)) if url else EMBEDDED

    @classmethod
    def start(cls, settings: Settings, broker: dramatiq.Broker) -> Runtime:
        return cls(settings, create_engine(database_url(settings)), broker, build_limiter(settings))

    def mailchimp(self, api_key: str) -> MailchimpClient:
        """One pooled client per API key, shared by the threads of this process."""
        return self._clients(api_key)

    def send(self, *messages: Message) -> None:
        send(self.broker, *messages)

    def close(self) -> None:
        self._clients.close()
        self.engine.dispose()
        if isinstance(self.crm, CiviCrm):
            self.crm.engine.dispose()


REDIS_TIMEOUT = 5.0  # seconds


def build_limiter(settings: Settings) -> ConnectionLimiter:
    """Redis leases when Redis is configured (many processes), else in-process."""
    limit = settings.mailchimp_max_connections
    if settings.redis_url:
        # Timeouts: a Redis that hangs must not hold a request; the limiter falls back.
        client = redis.Redis.from_url(
            settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
        )
        return RedisConnectionLimiter(client, limit=limit)
    return LocalConnectionLimiter(limit=limit)
