"""RabbitMQ and Redis for the resilience tests: a vhost of their own, emptied before each test."""

from __future__ import annotations

from rabbit_vhosts import isolated_rabbitmq
from server_checks import require_server

VHOST = "mcsync_resilience_test"
RABBITMQ = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
REDIS = "redis://127.0.0.1:6379/0"


def require_isolated_rabbitmq() -> None:
    """Skip (fail under CI) without RabbitMQ and Redis; make sure our vhost exists; purge it."""
    require_server("127.0.0.1", 6379, "Redis")
    isolated_rabbitmq(VHOST)
