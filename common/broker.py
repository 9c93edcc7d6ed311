"""Build the dramatiq broker and the rate-limit backend from Settings.

With a broker URL: RabbitMQ (pika), publisher confirms on, so a message we think we sent
really reached the queue. Without one: dramatiq's stub broker, with workers run in the
same process (the embedded default).
"""

from __future__ import annotations

import logging
from typing import cast

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.rate_limits import RateLimiterBackend
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from common.messages import Message
from common.settings import Settings


def build_broker(settings: Settings) -> dramatiq.Broker:
    """The broker for these settings, installed as dramatiq's global broker."""
    broker: dramatiq.Broker
    if settings.embedded_broker:
        broker = StubBroker()
        broker.emit_after("process_boot")
    else:
        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
        _quiet_dropped_idle_publishers()
    dramatiq.set_broker(broker)
    return broker


class _DroppedConnection(logging.Filter):
    """Leaves out pika's reports of a connection the broker dropped.

    pika's BlockingConnection sends heartbeats only while it is used, so RabbitMQ drops a
    thread's publishing connection once the thread has sent nothing for the heartbeat
    timeout (60 s): between runs, or once a worker's stage is over. The next send then
    fails on it, and dramatiq's enqueue opens a new connection and publishes again (it logs
    that at debug); pika meanwhile logged the reset at ERROR, three tracebacks per send, and
    closing the broker at shutdown logged an ERROR per dropped connection (dramatiq ignores
    the error). Consumers are kept alive by their loop, and dramatiq reports a consumer's
    lost connection itself; an enqueue that fails on new connections too raises to its caller.
    """

    SIGNS = (
        "Connection reset by peer",
        "Broken pipe",
        "StreamLostError",
        "called on closed connection",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(sign in message for sign in self.SIGNS)


_PIKA_CONNECTION_LOGGERS = (
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.base_connection",
    "pika.adapters.blocking_connection",
)


def _quiet_dropped_idle_publishers() -> None:
    for name in _PIKA_CONNECTION_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DroppedConnection) for f in logger.filters):
            logger.addFilter(_DroppedConnection())


def build_rate_limiter_backend(settings: Settings) -> RateLimiterBackend:
    """Redis when configured (shared by every worker process), else in-process."""
    if settings.redis_url:
        return cast(RateLimiterBackend, RedisBackend(url=settings.redis_url))
    return StubBackend()  # type: ignore[no-untyped-call]


def send(broker: dramatiq.Broker, *messages: Message) -> None:
    """Enqueue messages by route (queue + actor name), without importing the consumer."""
    for message in messages:
        broker.enqueue(
            dramatiq.Message(
                queue_name=message.queue,
                actor_name=message.actor,
                args=(),
                kwargs=message.to_wire(),
                options={},
            )
        )
