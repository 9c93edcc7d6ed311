"""Mailchimp's limit of 10 concurrent connections per API key, across every worker process.

A Redis sorted set per key holds one lease per request in flight, scored by when it was
taken. Leases older than ``lease_seconds`` do not count, so a worker killed mid-request gives
its slot back by itself. (dramatiq's ConcurrentRateLimiter keeps one counter per key, and a
slot leaked by a killed worker stays leaked for as long as traffic keeps the key alive.)
Without Redis (the embedded default, one process) a semaphore per key does the same job.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import redis

REDIS_AWAY = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
log = logging.getLogger(__name__)


class SlotTimeout(TimeoutError):
    """No connection slot came free in time; the caller retries later."""


class ConnectionLimiter(Protocol):
    def slot(self, api_key: str) -> AbstractContextManager[None]: ...


def lease_key(api_key: str) -> str:
    """The Redis key of an API key's leases."""
    # Never put the secret itself in Redis.
    return "mcsync:mailchimp-connections:" + hashlib.sha256(api_key.encode()).hexdigest()[:24]


@dataclass
class RedisConnectionLimiter:
    """Leases in Redis, shared by every process that talks to the same Redis.

    While Redis does not answer, each process holds the limit itself (``fallback``): the
    outage is logged once, Redis is tried again every ``retry_after_seconds``, and a request
    already under way is never failed for it (its lease, not given back, expires by itself).
    """

    client: redis.Redis
    limit: int = 10
    lease_seconds: float = 180.0
    wait_seconds: float = 120.0
    poll_seconds: float = 0.02
    retry_after_seconds: float = 5.0
    fallback: LocalConnectionLimiter = field(init=False)
    _away_since: float | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.fallback = LocalConnectionLimiter(limit=self.limit, wait_seconds=self.wait_seconds)

    @contextmanager
    def slot(self, api_key: str) -> Iterator[None]:
        key, token = lease_key(api_key), uuid.uuid4().hex
        taken = False
        if not self._away():
            try:
                taken = self._take(key, token)
            except REDIS_AWAY as error:
                self._went_away(error)
        if not taken:
            with self.fallback.slot(api_key):
                yield
            return
        try:
            yield
        finally:
            self._release(key, token)

    def in_use(self, api_key: str) -> int:
        key = lease_key(api_key)
        return int(self.client.zcount(key, self._now() - self.lease_seconds, "+inf"))

    def _take(self, key: str, token: str) -> bool:
        """True once a lease is taken; raises SlotTimeout, or what Redis raises."""
        deadline = time.monotonic() + self.wait_seconds
        while not self._try_take(key, token):
            if time.monotonic() >= deadline:
                raise SlotTimeout(f"no Mailchimp connection slot free for {self.wait_seconds} s")
            time.sleep(self.poll_seconds)
        self._came_back()
        return True

    def _away(self) -> bool:
        """Redis did not answer lately: not tried again before ``retry_after_seconds``."""
        since = self._away_since
        return since is not None and time.monotonic() - since < self.retry_after_seconds

    def _went_away(self, error: Exception) -> None:
        with self._lock:
            first = self._away_since is None
            self._away_since = time.monotonic()
        if first:
            log.warning(
                "Redis does not answer (%s): each process limits its own Mailchimp connections "
                "until it is back",
                error,
            )

    def _came_back(self) -> None:
        if self._away_since is None:
            return
        with self._lock:
            was_away, self._away_since = self._away_since is not None, None
        if was_away:
            log.info("Redis answers again: the Mailchimp connection limit is shared again")

    def _now(self) -> float:
        # Redis's clock, not ours: workers on several machines must agree on lease ages.
        seconds, micros = self.client.time()
        return float(seconds) + micros / 1e6

    def _try_take(self, key: str, token: str) -> bool:
        # Optimistic transaction: if any other lease is taken or given back between our count
        # and our write, Redis refuses the write (WATCH) and we count again.
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    now = self._now()
                    if pipe.zcount(key, now - self.lease_seconds, "+inf") >= self.limit:
                        return False
                    pipe.multi()
                    pipe.zremrangebyscore(key, "-inf", now - self.lease_seconds)
                    pipe.zadd(key, {token: now})
                    pipe.expire(key, int(self.lease_seconds) + 60)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def _release(self, key: str, token: str) -> None:
        try:
            self.client.zrem(key, token)
        except REDIS_AWAY as error:  # the request is done: its lease expires by itself
            self._went_away(error)


@dataclass
class LocalConnectionLimiter:
    """One process only: a bounded semaphore per API key."""

    limit: int = 10
    wait_seconds: float = 120.0
    _semaphores: dict[str, threading.BoundedSemaphore] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def slot(self, api_key: str) -> Iterator[None]:
        with self._lock:
            semaphore = self._semaphores.setdefault(api_key, threading.BoundedSemaphore(self.limit))
        if not semaphore.acquire(timeout=self.wait_seconds):
            raise SlotTimeout(f"no Mailchimp connection slot free for {self.wait_seconds} s")
        try:
            yield
        finally:
            semaphore.release()
