"""RabbitMQ for the resilience tests: a vhost of their own, emptied before each test.

Other processes on this machine (benchmarks, other engineers' workers) consume the same queue
names on the default vhost ``/``: purging those, or letting their workers take our messages,
would break both. Hence a separate vhost, created with ``rabbitmqctl`` when missing.
"""

from __future__ import annotations

import shutil
import subprocess

import pika
import pika.exceptions
import pytest
from server_checks import require_server

from common.messages import FETCHER, RECONCILER, SUBMITTER

VHOST = "mcsync_resilience_test"
RABBITMQ = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
REDIS = "redis://127.0.0.1:6379/0"
QUEUES = [f"{q}{suffix}" for q in (FETCHER, RECONCILER, SUBMITTER) for suffix in ("", ".DQ", ".XQ")]


def require_isolated_rabbitmq() -> None:
    """Skip (fail under CI) without RabbitMQ and Redis; make sure our vhost exists; purge it."""
    require_server("127.0.0.1", 5672, "RabbitMQ")
    require_server("127.0.0.1", 6379, "Redis")
    _ensure_vhost()
    _purge_queues()


def _ensure_vhost() -> None:
    try:
        pika.BlockingConnection(pika.URLParameters(RABBITMQ)).close()
        return
    except pika.exceptions.AMQPConnectionError:
        pass
    if shutil.which("rabbitmqctl") is None:
        pytest.skip(f"RabbitMQ has no vhost {VHOST} and rabbitmqctl is not here to add it")
    for command in (
        ["add_vhost", VHOST],
        ["set_permissions", "-p", VHOST, "guest", ".*", ".*", ".*"],
    ):
        subprocess.run(["rabbitmqctl", *command], check=True, capture_output=True, timeout=60)


def _purge_queues() -> None:
    """Empty the services' queues and dramatiq's delay (.DQ) and dead-letter (.XQ) queues."""
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ))
    try:
        for name in QUEUES:
            channel = connection.channel()
            try:
                channel.queue_declare(name, passive=True)
                channel.queue_purge(name)
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                pass  # never declared in this vhost: nothing to purge
    finally:
        connection.close()
