"""The relay publishes what the webhook could not: broker down, process died after commit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from audience_support import LIST_ID, SECRET, Recorder, inbox_rows, synced_audience
from webhooks_support import FORM, TestClient

from common.audience_events import AudienceEvent, AudienceEventType
from common.db import inbox
from common.db.schema import webhook_event
from common.messages import Message, ProcessBatch, SyncMember
from services.webhooks.app import AUDIENCE_WEBHOOK_PATH, BATCH_WEBHOOK_PATH, Deps, create_app
from services.webhooks.relay import REDELIVER_AFTER, Relay, publish_pending

pytestmark = pytest.mark.integration

URL = f"{AUDIENCE_WEBHOOK_PATH}?secret={SECRET}"
LATER = timedelta(minutes=1)


def _subscribe(n: int) -> str:
    return urlencode(
        {"type": "subscribe", "data[list_id]": LIST_ID, "data[email]": f"p{n}@example.com"}
    )


def _store(engine: sa.Engine, count: int) -> list[int]:
    """Events stored as if the process died before publishing them."""
    event = AudienceEvent(AudienceEventType.SUBSCRIBE, LIST_ID, "x@example.com")
    with engine.begin() as conn:
        return [inbox.record(conn, LIST_ID, "subscribe", event.to_json()) for _ in range(count)]


def _now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def engine(clean_tables: sa.Engine) -> Iterator[sa.Engine]:
    synced_audience(clean_tables)
    yield clean_tables


def test_events_taken_while_the_broker_was_down_are_published_once_by_the_relay(
    engine: sa.Engine,
) -> None:
    with TestClient(create_app(Deps(engine=engine, send=Recorder(down=True)))) as client:
        for n in range(3):
            reply = client.post(URL, content=_subscribe(n), headers=FORM)
            assert reply.status_code == 200
    stored = inbox_rows(engine)
    assert [row.published_at for row in stored] == [None, None, None]

    sent, now = Recorder(), _now() + LATER
    assert publish_pending(engine, sent, now) == 3
    assert sent.messages == [SyncMember(event_id=row.id) for row in stored]
    assert [row.published_at for row in inbox_rows(engine)] == [now, now, now]

    again = Recorder()
    assert publish_pending(engine, again, now + LATER) == 0
    assert again.messages == []


def test_events_younger_than_the_grace_period_are_left_to_the_webhooks_own_send(
    engine: sa.Engine,
) -> None:
    _store(engine, 2)
    sent = Recorder()
    assert publish_pending(engine, sent, _now(), grace=timedelta(seconds=30)) == 0
    assert sent.messages == []


def test_a_pass_publishes_a_backlog_in_bounded_pages_oldest_first(engine: sa.Engine) -> None:
    ids = _store(engine, 7)
    sent = Recorder()
    assert publish_pending(engine, sent, _now() + LATER, page_size=3) == 7
    assert sent.sync_members() == ids


def test_already_published_events_are_not_sent_again(engine: sa.Engine) -> None:
    first, second = _store(engine, 2)
    with engine.begin() as conn:
        inbox.mark_published(conn, [first], _now())
    sent = Recorder()
    assert publish_pending(engine, sent, _now() + LATER) == 1
    assert sent.sync_members() == [second]


def test_with_the_broker_still_down_a_pass_fails_and_leaves_the_events_unpublished(
    engine: sa.Engine,
) -> None:
    _store(engine, 2)
    with pytest.raises(ConnectionError):
        publish_pending(engine, Recorder(down=True), _now() + LATER)
    assert [row.published_at for row in inbox_rows(engine)] == [None, None]
    assert publish_pending(engine, Recorder(), _now() + LATER) == 2


def test_an_event_another_transaction_holds_is_left_for_the_next_pass(engine: sa.Engine) -> None:
    held, free = _store(engine, 2)
    sent = Recorder()
    with engine.begin() as other_replica:
        other_replica.execute(
            sa.select(webhook_event.c.id).where(webhook_event.c.id == held).with_for_update()
        )
        assert publish_pending(engine, sent, _now() + LATER) == 1
    assert publish_pending(engine, sent, _now() + LATER) == 1
    assert sent.sync_members() == [free, held]


def test_relays_of_several_replicas_publish_each_event_exactly_once(engine: sa.Engine) -> None:
    ids = _store(engine, 600)
    sent, now = Recorder(), _now() + LATER
    with ThreadPoolExecutor(4) as pool:
        passes = [pool.submit(publish_pending, engine, sent, now, page_size=25) for _ in range(4)]
    assert sum(p.result() for p in passes) == 600
    assert sorted(sent.sync_members()) == ids


def test_no_row_is_locked_while_a_message_is_on_its_way(engine: sa.Engine) -> None:
    """The reconciler's claim skips locked rows: it must find the event free on delivery."""
    [event_id] = _store(engine, 1)
    claimed: list[object] = []

    def reconciler_receives(*messages: Message) -> None:
        with engine.begin() as conn:
            claimed.append(inbox.claim(conn, event_id))

    publish_pending(engine, reconciler_receives, _now() + LATER)
    assert [getattr(found, "id", None) for found in claimed] == [event_id]


def test_events_published_long_ago_and_never_acted_on_are_sent_again(engine: sa.Engine) -> None:
    lost, acted_on, recent = _store(engine, 3)
    now = _now()
    with engine.begin() as conn:
        inbox.mark_published(conn, [lost, acted_on], now - timedelta(hours=2))
        inbox.finish(conn, acted_on, "done", now - timedelta(hours=2))
        inbox.mark_published(conn, [recent], now - timedelta(minutes=5))
    sent = Recorder()
    assert publish_pending(engine, sent, now) == 1
    assert sent.sync_members() == [lost]
    assert publish_pending(engine, Recorder(), now) == 0


def test_the_relay_thread_publishes_survives_a_broker_outage_and_stops_promptly(
    engine: sa.Engine,
) -> None:
    ids = _store(engine, 3)
    sent = Recorder(down=True)
    relay = Relay(engine, sent, every_seconds=0.05, grace_seconds=0)
    relay.start()
    try:
        time.sleep(0.2)  # a few failing passes
        sent.down = False
        deadline = time.monotonic() + 10
        while sent.sync_members() != ids and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        started = time.monotonic()
        relay.stop()
        assert time.monotonic() - started < 1
    assert sent.sync_members() == ids
    assert all(row.published_at is not None for row in inbox_rows(engine))


def test_a_relay_with_a_long_period_still_stops_at_once() -> None:
    nowhere = sa.create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    relay = Relay(nowhere, Recorder(), every_seconds=60)
    relay.start()
    time.sleep(0.05)
    started = time.monotonic()
    relay.stop()
    assert time.monotonic() - started < 1


def test_a_batch_webhook_while_the_broker_is_down_is_answered_and_published_once_it_is_back(
    engine: sa.Engine,
) -> None:
    body = urlencode({"type": "batch_operation_completed", "data[id]": "8b2428d747"})
    with TestClient(create_app(Deps(engine=engine, send=Recorder(down=True)))) as client:
        reply = client.post(f"{BATCH_WEBHOOK_PATH}?secret={SECRET}", content=body, headers=FORM)
    assert (reply.status_code, reply.json()) == (200, {"ok": True})

    sent = Recorder()
    assert publish_pending(engine, sent, _now() + LATER) == 1
    assert publish_pending(engine, sent, _now() + REDELIVER_AFTER + LATER) == 0  # done with
    assert sent.messages == [ProcessBatch(mailchimp_batch_id="8b2428d747")]
