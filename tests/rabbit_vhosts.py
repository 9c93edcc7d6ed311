"""RabbitMQ vhosts of the tests' own, emptied before use.

Other processes on this machine (benchmarks, other engineers' workers) consume the same queue
names on the default vhost ``/``: purging those, or letting their workers take our messages,
would break both. Hence a vhost per kind of test, created with ``rabbitmqctl`` when missing.
"""

from __future__ import annotations

import shutil
import subprocess

import pika
import pika.exceptions
import pytest
from server_checks import require_server

from common.messages import FETCHER, RECONCILER, SUBMITTER

QUEUES = [f"{q}{suffix}" for q in (FETCHER, RECONCILER, SUBMITTER) for suffix in ("", ".DQ", ".XQ")]


def isolated_rabbitmq(vhost: str) -> str:
    """The URL of an empty vhost of our own; skip (fail under CI) without RabbitMQ."""
    require_server("127.0.0.1", 5672, "RabbitMQ")
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    _ensure_vhost(url, vhost)
    _purge_queues(url)
    return url


def _ensure_vhost(url: str, vhost: str) -> None:
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
        return
    except pika.exceptions.AMQPConnectionError:
        pass
    if shutil.which("rabbitmqctl") is None:
        pytest.skip(f"RabbitMQ has no vhost {vhost} and rabbitmqctl is not here to add it")
    for command in (
        ["add_vhost", vhost],
        ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
    ):
        subprocess.run(["rabbitmqctl", *command], check=True, capture_output=True, timeout=60)


def _purge_queues(url: str) -> None:
    """Empty the services' queues and dramatiq's delay (.DQ) and dead-letter (.XQ) queues."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
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


def dead_letters(url: str) -> int:
    """How many messages sit in the services' dead-letter (.XQ) queues."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    total = 0
    try:
        for name in (q for q in QUEUES if q.endswith(".XQ")):
            channel = connection.channel()
            try:
                total += channel.queue_declare(name, passive=True).method.message_count
                channel.close()
            except pika.exceptions.ChannelClosedByBroker:
                pass  # never declared: nothing dead-lettered there
    finally:
        connection.close()
    return total
