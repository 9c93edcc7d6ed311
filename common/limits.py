"""Mailchimp's limit of 10 concurrent connections per API key, across every worker process.

A Redis sorted set per key holds one lease per request in flight, scored by when it was
taken. Leases older than ``lease_seconds`` do not count, so a worker killed mid-request gives
its slot back by itself. (dramatiq's ConcurrentRateLimiter keeps one counter per key, and a
slot leaked by a killed worker stays leaked for as long as traffic keeps the key alive.)
Without Redis (the embedded default, one process) a semaphore per key does the same job.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import redis


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
    """Leases in Redis, shared by every process that talks to the same Redis."""

    client: redis.Redis
    limit: int = 10
    lease_seconds: float = 180.0
    wait_seconds: float = 120.0
    poll_seconds: float = 0.02

    @contextmanager
    def slot(self, api_key: str) -> Iterator[None]:
        key, token = lease_key(api_key), uuid.uuid4().hex
        deadline = time.monotonic() + self.wait_seconds
        while not self._try_take(key, token):
            if time.monotonic() >= deadline:
                raise SlotTimeout(f"no Mailchimp connection slot free for {self.wait_seconds} s")
            time.sleep(self.poll_seconds)
        try:
            yield
        finally:
            self._release(key, token)

    def in_use(self, api_key: str) -> int:
        key = lease_key(api_key)
        return int(self.client.zcount(key, self._now() - self.lease_seconds, "+inf"))

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
        self.client.zrem(key, token)


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
