"""The RabbitMQ broker when a publishing connection has been idle past its heartbeat."""

from __future__ import annotations

import logging
import time

import pika
import pytest
from rabbit_vhosts import isolated_rabbitmq

from common.broker import build_broker, send
from common.messages import CheckBatches
from common.settings import Settings

pytestmark = pytest.mark.integration


def _queued(url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def test_a_connection_dropped_while_idle_is_replaced_and_closed_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = isolated_rabbitmq("mcsync_idle_publisher")
    caplog.clear()  # a vhost created just now was first tried and refused, logged at ERROR
    # pika sends heartbeats only while a connection is used: with a one-second heartbeat,
    # RabbitMQ drops the idle publishing connection within seconds, as it does after 60 s.
    broker = build_broker(Settings(broker_url=url + "?heartbeat=1"))
    with caplog.at_level(logging.DEBUG, logger="pika"):
        send(broker, CheckBatches())
        time.sleep(4)
        send(broker, CheckBatches())
        time.sleep(4)  # dropped again before the broker closes it at shutdown
        broker.close()

    assert _queued(url, CheckBatches.queue) == 2
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
