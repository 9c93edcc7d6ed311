"""The sync schedule triggers every connection at each time of its cron expression, once
whatever the number of processes running it, and again if the broker refused the triggers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from common.db import config, crm
from common.messages import Message, StartSync
from mcsync.schedule import SyncSchedule

pytestmark = pytest.mark.integration

HOURLY = "0 * * * *"
T0 = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Sent:
    def __init__(self, down: bool = False) -> None:
        self.down = down
        self.messages: list[Message] = []

    def __call__(self, *messages: Message) -> None:
        if self.down:
            raise ConnectionError("RabbitMQ is down")
        self.messages.extend(messages)


@pytest.fixture
def engine(clean_tables: sa.Engine) -> sa.Engine:
    with clean_tables.begin() as conn:
        account = config.add_account(conn, "Org", "0" * 32 + "-us1")
        for n, list_id in enumerate(["a1b2c3d4e5", "b2c3d4e5f6"]):
            group = crm.create_group(conn, f"g{n}", f"G{n}")
            config.add_connection(conn, account, list_id, group, {})
    return clean_tables


def test_each_hour_every_connection_is_synced_with_no_time_limit(engine: sa.Engine) -> None:
    clock, sent = Clock(T0), Sent()
    schedule = SyncSchedule(engine, sent, HOURLY, clock)

    before = schedule.tick()
    clock.now = T0 + timedelta(minutes=30, seconds=5)  # 10:00:05
    at_ten = schedule.tick()
    again = schedule.tick()

    assert (before, at_ten, again) == (0, 2, 0)
    assert sent.messages == [
        StartSync(list_id="a1b2c3d4e5", max_time=0),
        StartSync(list_id="b2c3d4e5f6", max_time=0),
    ]
    assert schedule.next_at == datetime(2026, 12, 7, 11, 0, tzinfo=UTC)


def test_two_processes_running_the_schedule_trigger_each_time_once(engine: sa.Engine) -> None:
    clock, sent = Clock(T0), Sent()
    replicas = [SyncSchedule(engine, sent, HOURLY, clock) for _ in range(2)]
    clock.now = T0 + timedelta(minutes=31)

    assert [replica.tick() for replica in replicas] == [2, 0]
    assert len(sent.messages) == 2


def test_triggers_the_broker_refused_are_sent_at_the_next_tick(engine: sa.Engine) -> None:
    clock, sent = Clock(T0), Sent(down=True)
    schedule = SyncSchedule(engine, sent, HOURLY, clock)
    clock.now = T0 + timedelta(minutes=31)

    with pytest.raises(ConnectionError):
        schedule.tick()
    sent.down = False
    clock.now += timedelta(seconds=20)

    assert schedule.tick() == 2 and len(sent.messages) == 2
