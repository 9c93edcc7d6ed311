"""Redis (the shared Mailchimp connection limit) going away never costs a request.

The worker reaches the machine's Redis through a proxy that stages the outage.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis
from server_checks import require_server
from submitter_support import Audience, batches, new_subscribers, rows, utcnow
from tcp_proxy import TcpProxy

from common.limits import RedisConnectionLimiter
from common.mailchimp import MailchimpClient
from services.submitter.handlers import submit_updates

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_proxy() -> Iterator[TcpProxy]:
    require_server("127.0.0.1", 6379, "Redis")
    proxy = TcpProxy(6379)
    yield proxy
    proxy.close()


def test_a_batch_posted_while_redis_went_away_is_recorded_not_thrown_away(
    audience: Audience, redis_proxy: TcpProxy
) -> None:
    shared = redis.Redis.from_url(redis_proxy.url("redis://127.0.0.1:{port}/0"), socket_timeout=2)
    limiter = RedisConnectionLimiter(shared, limit=10)
    client = MailchimpClient(
        audience.api_key, base_url=audience.running.api_url, retries=0, limiter=limiter
    )
    new_subscribers(audience, 4)
    slow = {"kind": "latency", "seconds": 1.0, "count": 1, "method": "POST"}
    audience.control("POST", "/faults", json=slow | {"path_prefix": "/batches"})

    outage_over = threading.Event()

    def redis_goes_away_during_the_post() -> None:
        time.sleep(0.3)
        with redis_proxy.outage():
            outage_over.wait(10)

    staging = threading.Thread(target=redis_goes_away_during_the_post)
    staging.start()
    try:
        report = submit_updates(audience.engine, client, audience.list_id, utcnow())
    finally:
        outage_over.set()
        staging.join()
        client.close()

    assert report.batches_posted == 1
    (posted,) = batches(audience.engine)
    assert posted.mailchimp_batch_id is not None  # recorded at once, not left *posting*
    audience.drain()
    assert {r.sync_status for r in rows(audience.engine).values()} == {"ok"}
