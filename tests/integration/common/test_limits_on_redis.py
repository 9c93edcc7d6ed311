import threading
import time
import uuid

import pytest
import redis
from server_checks import require_server

from common.limits import RedisConnectionLimiter

pytestmark = pytest.mark.integration


def test_workers_on_real_redis_never_exceed_ten_connections_per_key() -> None:
    require_server("127.0.0.1", 6379, "Redis")
    api_key = uuid.uuid4().hex + "-us6"
    in_flight, peak, guard = 0, 0, threading.Lock()

    def request() -> None:
        nonlocal in_flight, peak
        # One client per caller, as separate worker processes would have.
        limiter = RedisConnectionLimiter(redis.Redis(), limit=10, poll_seconds=0.002)
        with limiter.slot(api_key):
            with guard:
                in_flight += 1
                peak = max(peak, in_flight)
            time.sleep(0.02)
            with guard:
                in_flight -= 1

    threads = [threading.Thread(target=request) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert 1 <= peak <= 10
    assert RedisConnectionLimiter(redis.Redis()).in_use(api_key) == 0
