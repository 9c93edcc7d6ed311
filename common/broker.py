"""Build the dramatiq broker and the rate-limit backend from Settings.

With a broker URL: RabbitMQ (pika), publisher confirms on, so a message we think we sent
really reached the queue. Without one: dramatiq's stub broker, with workers run in the
same process (the embedded default).
"""

from __future__ import annotations

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
    dramatiq.set_broker(broker)
    return broker


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
