"""Audience webhooks fired by control actions, the concurrency limit and injected faults."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from simtest_support import Receiver, Setup

pytestmark = pytest.mark.integration

EVENTS = {
    "subscribe": True,
    "unsubscribe": True,
    "profile": True,
    "cleaned": True,
    "upemail": True,
    "campaign": False,
}


def _register(setup: Setup, receiver: Receiver, api: bool) -> None:
    reply = setup.session.post(
        setup.url("/lists/{list}/webhooks"),
        json={
            "url": receiver.url,
            "events": EVENTS,
            "sources": {"user": True, "admin": True, "api": api},
        },
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["sources"]["api"] is api


def _act(setup: Setup, email: str, action: str, **body: object) -> list[str]:
    reply = setup.control(
        "POST", f"/lists/{setup.list_id}/members/{email}/actions/{action}", json=body
    )
    assert reply.status_code == 200, reply.text
    return reply.json()["events"]  # type: ignore[no-any-return]


def test_list_webhook_is_validated_with_a_get(setup: Setup, receiver: Receiver) -> None:
    _register(setup, receiver, api=False)
    validation = receiver.requests[0]
    assert validation["method"] == "GET"
    assert validation["headers"]["User-Agent"] == "MailChimp.com WebHook Validator"
    listed = setup.session.get(setup.url("/lists/{list}/webhooks")).json()
    assert listed["total_items"] == 1
    hook_id = listed["webhooks"][0]["id"]
    patched = setup.session.patch(
        setup.url(f"/lists/{{list}}/webhooks/{hook_id}"), json={"sources": {"admin": False}}
    )
    assert patched.json()["sources"] == {"user": True, "admin": False, "api": False}
    assert setup.session.delete(setup.url(f"/lists/{{list}}/webhooks/{hook_id}")).status_code == 204


def test_contact_actions_fire_php_style_form_posts(setup: Setup, receiver: Receiver) -> None:
    _register(setup, receiver, api=False)
    assert _act(
        setup, "jo@example.org", "subscribe", source="user", merge_fields={"FNAME": "Jo"}
    ) == ["subscribe"]
    assert _act(
        setup, "jo@example.org", "profile", source="admin", merge_fields={"FNAME": "Joanna"}
    ) == ["profile"]
    assert _act(
        setup, "jo@example.org", "upemail", source="user", new_email="jo.new@example.org"
    ) == ["upemail"]
    assert _act(setup, "jo.new@example.org", "unsubscribe", source="user") == ["unsubscribe"]
    assert _act(setup, "jo.new@example.org", "clean", source="admin") == ["cleaned"]
    posts = receiver.wait_for(lambda posts: len(posts) == 5)
    forms = sorted((p["form"] for p in posts), key=lambda f: f["fired_at"] + f["type"])
    by_type = {form["type"]: form for form in forms}
    assert set(by_type) == {"subscribe", "profile", "upemail", "unsubscribe", "cleaned"}
    subscribe = by_type["subscribe"]
    assert subscribe["data[email]"] == "jo@example.org"
    assert subscribe["data[merges][FNAME]"] == "Jo"
    assert subscribe["data[list_id]"] == setup.list_id
    assert "data[merges][GROUPINGS][0][name]" in subscribe
    assert by_type["profile"]["data[merges][FNAME]"] == "Joanna"
    assert (by_type["upemail"]["data[old_email]"], by_type["upemail"]["data[new_email]"]) == (
        "jo@example.org",
        "jo.new@example.org",
    )
    assert (by_type["unsubscribe"]["data[action]"], by_type["unsubscribe"]["data[reason]"]) == (
        "unsub",
        "manual",
    )
    assert by_type["cleaned"]["data[reason]"] == "hard"
    assert posts[0]["headers"]["User-Agent"] == "MailChimp.com"
    assert "data%5Bemail%5D=" in posts[0]["raw"]
    assert time.strptime(subscribe["fired_at"], "%Y-%m-%d %H:%M:%S")


def test_api_writes_fire_only_to_webhooks_with_api_source(setup: Setup, receiver: Receiver) -> None:
    _register(setup, receiver, api=False)
    setup.session.post(
        setup.url("/lists/{list}/members"),
        json={"email_address": "api@example.org", "status": "subscribed"},
    )
    _act(setup, "late@example.org", "subscribe", source="user")
    posts = receiver.wait_for(lambda posts: len(posts) >= 1)
    time.sleep(0.2)
    assert [p["form"]["data[email]"] for p in receiver.posts()] == ["late@example.org"]
    _register(setup, receiver, api=True)
    setup.session.patch(
        setup.url("/lists/{list}/members/api@example.org"), json={"status": "unsubscribed"}
    )
    posts = receiver.wait_for(lambda posts: len(posts) == 2)
    assert posts[1]["form"]["type"] == "unsubscribe"


def test_more_than_ten_concurrent_requests_get_429(setup: Setup) -> None:
    setup.control(
        "POST", "/faults", json={"kind": "latency", "seconds": 0.8, "path_prefix": "/ping"}
    )

    def ping() -> int:
        return requests.get(setup.url("/ping"), auth=("u", setup.api_key), timeout=5).status_code

    with ThreadPoolExecutor(max_workers=15) as pool:
        codes = list(pool.map(lambda _: ping(), range(15)))
    assert codes.count(200) == 10
    assert codes.count(429) == 5
    setup.control("DELETE", "/faults")
    setup.control("PATCH", "/switches", json={"concurrency_limit_enabled": False})
    setup.control("POST", "/faults", json={"kind": "latency", "seconds": 0.3})
    with ThreadPoolExecutor(max_workers=15) as pool:
        assert set(pool.map(lambda _: ping(), range(15))) == {200}


def test_injected_429_then_5xx_then_html_then_normal(setup: Setup) -> None:
    faults = [
        {"kind": "status", "status": 429, "count": 1, "retry_after": 7},
        {"kind": "status", "status": 503, "count": 2, "method": "GET"},
        {"kind": "html", "status": 502, "count": 1},
    ]
    for fault in faults:
        setup.control("POST", "/faults", json=fault)
    first = setup.session.get(setup.url("/lists"))
    assert (first.status_code, first.headers["Retry-After"]) == (429, "7")
    assert first.json()["title"] == "Too Many Requests"
    assert [setup.session.get(setup.url("/lists")).status_code for _ in range(2)] == [503, 503]
    html = setup.session.get(setup.url("/lists"))
    assert html.status_code == 502
    assert html.headers["Content-Type"].startswith("text/html")
    assert setup.session.get(setup.url("/lists")).status_code == 200


def test_injected_fault_scoped_to_a_path_prefix(setup: Setup) -> None:
    setup.control(
        "POST",
        "/faults",
        json={"kind": "status", "status": 500, "count": 1, "path_prefix": "/lists/"},
    )
    assert setup.session.get(setup.url("/lists")).status_code == 200
    assert setup.session.get(setup.url("/lists/{list}")).status_code == 500


def test_injected_timeout_hangs_past_the_client_timeout(setup: Setup) -> None:
    setup.control("POST", "/faults", json={"kind": "timeout", "seconds": 1.0, "count": 1})
    with pytest.raises(requests.exceptions.ReadTimeout):
        setup.session.get(setup.url("/ping"), timeout=0.2)
    assert setup.session.get(setup.url("/ping"), timeout=5).status_code == 200
