import logging

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.rate_limits.backends import RedisBackend, StubBackend

from common.broker import build_broker, build_rate_limiter_backend
from common.settings import Settings


def test_no_broker_url_gives_the_in_process_stub_broker() -> None:
    broker = build_broker(Settings())

    assert isinstance(broker, StubBroker)
    assert dramatiq.get_broker() is broker


def test_a_broker_url_gives_rabbitmq_with_publisher_confirms() -> None:
    broker = build_broker(Settings(broker_url="amqp://guest:guest@127.0.0.1:5672/"))

    assert isinstance(broker, RabbitmqBroker)
    assert broker.confirm_delivery
    broker.close()


def test_rate_limits_are_shared_through_redis_when_configured() -> None:
    assert isinstance(build_rate_limiter_backend(Settings()), StubBackend)
    backend = build_rate_limiter_backend(Settings(redis_url="redis://127.0.0.1:6379/0"))
    assert isinstance(backend, RedisBackend)


def test_pika_reports_of_a_dropped_connection_are_left_out_and_its_other_errors_kept() -> None:
    build_broker(Settings(broker_url="amqp://guest:guest@127.0.0.1:5672/")).close()
    logger = logging.getLogger("pika.adapters.base_connection")

    def kept(message: str) -> bool:
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, message, (), None)
        return bool(logger.filter(record))

    assert not kept("connection_lost: StreamLostError: ('Stream connection lost: ...')")
    assert not kept("error=ConnectionResetError(104, 'Connection reset by peer')")
    assert kept("Connection workflow failed: AMQPConnectorSocketConnectError: refused")
