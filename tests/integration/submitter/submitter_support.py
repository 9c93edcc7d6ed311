"""Helpers for the submitter's integration tests: rows in the DB, a simulated account."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import sqlalchemy as sa

from common.db import runs
from common.db.schema import batch, cache, update
from common.mailchimp import MailchimpClient
from common.member_data import subscriber_hash
from services.submitter.handlers import CheckReport, check_batches
from sim.mailchimp import RunningSimulator


@dataclass
class Audience:
    """One simulated account with one audience, and a client for it (no retries)."""

    running: RunningSimulator
    engine: sa.Engine
    api_key: str
    list_id: str
    client: MailchimpClient

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = requests.request(
            method, self.running.base_url + "/_sim" + path, timeout=10, **kwargs
        )
        reply.raise_for_status()
        return reply.json() if reply.content else None

    def requests_seen(self) -> dict[str, Any]:
        return self.control("GET", "/requests")  # type: ignore[no-any-return]

    def batch_posts(self) -> int:
        return int(self.requests_seen()["counts"].get("POST /batches", 0))

    def members(self) -> dict[str, dict[str, Any]]:
        listed = self.control("GET", f"/lists/{self.list_id}/members")["members"]
        return {m["email_address"]: m for m in listed}

    def check(self, now: datetime | None = None, **kwargs: Any) -> CheckReport:
        return check_batches(self.engine, lambda _: self.client, now or utcnow(), **kwargs)

    def drain(self, seconds: float = 20.0) -> list[CheckReport]:
        """Poll until none of our batches awaits processing."""
        reports = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            reports.append(self.check())
            if not unprocessed(self.engine):
                return reports
            time.sleep(0.05)
        raise AssertionError(f"batches still unprocessed: {unprocessed(self.engine)}")

    def wait_batches_finished(self, seconds: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            listed = self.client.get("/batches", {"count": 1000})["batches"]
            if all(b["status"] == "finished" for b in listed):
                return listed  # type: ignore[no-any-return]
            time.sleep(0.05)
        raise AssertionError("simulator batches did not finish")


def utcnow() -> datetime:
    return datetime.now(UTC)


def add_rows(
    engine: sa.Engine,
    list_id: str,
    emails: list[str],
    known: bool = False,
    mailchimp_status: str | None = None,
) -> list[int]:
    """Cache rows (``live``); ``known``: the member is at Mailchimp (member id and email set)."""
    rows = [
        {
            "mailchimp_list_id": list_id,
            "mailchimp_member_id": subscriber_hash(e) if known else None,
            "mailchimp_email": e if known else None,
            "mailchimp_status": mailchimp_status,
            "sync_status": "live",
        }
        for e in emails
    ]
    with engine.begin() as conn:
        return list(
            conn.scalars(sa.insert(cache).returning(cache.c.id, sort_by_parameter_order=True), rows)
        )


def add_updates(engine: sa.Engine, items: list[tuple[int, dict[str, Any]]]) -> list[int]:
    with engine.begin() as conn:
        return list(
            conn.scalars(
                sa.insert(update).returning(update.c.id, sort_by_parameter_order=True),
                [{"mailchimpsync_cache_id": c, "data": d} for c, d in items],
            )
        )


def subscribe(email: str) -> dict[str, str]:
    """The update data subscribing a new member."""
    return {"email_address": email, "status": "subscribed"}


def new_subscribers(audience: Audience, count: int, prefix: str = "new") -> list[int]:
    """``count`` rows not at Mailchimp yet, each with an update subscribing it; their ids."""
    emails = [f"{prefix}{n}@example.org" for n in range(count)]
    cache_ids = add_rows(audience.engine, audience.list_id, emails)
    return add_updates(
        audience.engine, [(c, subscribe(e)) for c, e in zip(cache_ids, emails, strict=True)]
    )


def updates(engine: sa.Engine) -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(update).order_by(update.c.id)))


def rows(engine: sa.Engine) -> dict[int, sa.Row[Any]]:
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(sa.select(cache))}


def batches(engine: sa.Engine) -> list[sa.Row[Any]]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(batch).order_by(batch.c.id)))


def unprocessed(engine: sa.Engine) -> list[sa.Row[Any]]:
    return [b for b in batches(engine) if b.response_processed != 2]


def status_log(engine: sa.Engine, list_id: str) -> list[dict[str, str]]:
    with engine.connect() as conn:
        return runs.read_log(conn, list_id)
