import threading
import time

import fakeredis
import pytest

from common.limits import LocalConnectionLimiter, RedisConnectionLimiter, SlotTimeout

KEY = "0123456789abcdef0123456789abcdef-us6"


def _peak_concurrency(
    limiter: RedisConnectionLimiter | LocalConnectionLimiter, callers: int
) -> int:
    in_flight, peak, guard = 0, 0, threading.Lock()

    def request() -> None:
        nonlocal in_flight, peak
        with limiter.slot(KEY):
            with guard:
                in_flight += 1
                peak = max(peak, in_flight)
            time.sleep(0.01)
            with guard:
                in_flight -= 1

    threads = [threading.Thread(target=request) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return peak


def test_never_more_than_the_limit_in_flight_through_redis() -> None:
    limiter = RedisConnectionLimiter(fakeredis.FakeRedis(), limit=3, poll_seconds=0.001)

    assert 1 <= _peak_concurrency(limiter, callers=12) <= 3


def test_processes_sharing_redis_share_the_limit() -> None:
    server = fakeredis.FakeServer()
    first = RedisConnectionLimiter(fakeredis.FakeRedis(server=server), limit=2, wait_seconds=0.05)
    second = RedisConnectionLimiter(fakeredis.FakeRedis(server=server), limit=2, wait_seconds=0.05)

    with first.slot(KEY), second.slot(KEY), pytest.raises(SlotTimeout), first.slot(KEY):
        pass


def test_a_slot_is_given_back_after_the_request() -> None:
    limiter = RedisConnectionLimiter(fakeredis.FakeRedis(), limit=1)

    with limiter.slot(KEY):
        assert limiter.in_use(KEY) == 1
    assert limiter.in_use(KEY) == 0


def test_a_lease_left_by_a_killed_worker_expires() -> None:
    client = fakeredis.FakeRedis()
    dead_worker = RedisConnectionLimiter(client, limit=1, lease_seconds=0.2)
    leaked = dead_worker.slot(KEY)
    leaked.__enter__()  # never exited: the process died holding it

    survivor = RedisConnectionLimiter(client, limit=1, lease_seconds=0.2, wait_seconds=2)
    with survivor.slot(KEY):
        assert survivor.in_use(KEY) == 1


def test_the_api_key_is_not_stored_in_redis() -> None:
    client = fakeredis.FakeRedis()
    with RedisConnectionLimiter(client).slot(KEY):
        assert all(KEY.encode() not in key for key in client.keys("*"))


def test_the_in_process_limiter_holds_the_same_limit() -> None:
    assert 1 <= _peak_concurrency(LocalConnectionLimiter(limit=4), callers=16) <= 4


def test_a_request_under_way_when_redis_goes_away_still_succeeds() -> None:
    server = fakeredis.FakeServer()
    limiter = RedisConnectionLimiter(fakeredis.FakeRedis(server=server), limit=3)

    with limiter.slot(KEY):
        server.connected = False  # ... while the request is at Mailchimp
    # Giving the slot back failed: its lease expires by itself, and the answer is kept.


def test_while_redis_is_away_each_process_holds_the_limit_itself_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = fakeredis.FakeServer()
    server.connected = False
    limiter = RedisConnectionLimiter(
        fakeredis.FakeRedis(server=server), limit=3, poll_seconds=0.001, retry_after_seconds=60
    )

    assert 1 <= _peak_concurrency(limiter, callers=12) <= 3
    assert [r.levelname for r in caplog.records].count("WARNING") == 1


def test_the_limit_goes_back_to_redis_once_it_answers_again() -> None:
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    limiter = RedisConnectionLimiter(client, limit=3, retry_after_seconds=0)
    server.connected = False
    with limiter.slot(KEY):
        pass
    server.connected = True

    with limiter.slot(KEY):
        assert limiter.in_use(KEY) == 1
