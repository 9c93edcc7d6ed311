"""Batches end to end over HTTP: submit, poll, download, webhooks, limits."""

from __future__ import annotations

import io
import json
import tarfile
import time
from typing import Any

import pytest
import requests
from simtest_support import Receiver, Setup

pytestmark = pytest.mark.integration


def _submit(setup: Setup, operations: list[dict[str, Any]]) -> dict[str, Any]:
    reply = setup.session.post(setup.url("/batches"), json={"operations": operations})
    assert reply.status_code == 200, reply.text
    return reply.json()  # type: ignore[no-any-return]


def _wait_finished(setup: Setup, batch_id: str, seconds: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = setup.session.get(setup.url(f"/batches/{batch_id}")).json()
        if batch["status"] == "finished":
            return batch  # type: ignore[no-any-return]
        time.sleep(0.02)
    raise AssertionError(f"batch {batch_id} did not finish")


def _results(url: str) -> tuple[list[tarfile.TarInfo], list[dict[str, Any]]]:
    download = requests.get(url, timeout=5)
    assert download.status_code == 200
    items: list[dict[str, Any]] = []
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as archive:
        entries = archive.getmembers()
        for entry in entries:
            if entry.isfile() and entry.size:
                items += json.loads(archive.extractfile(entry).read())  # type: ignore[union-attr]
    return entries, items


def _member_ops(setup: Setup) -> list[dict[str, Any]]:
    body = json.dumps({"email_address": "b@example.org", "status_if_new": "subscribed"})
    return [
        {
            "method": "PUT",
            "path": f"/lists/{setup.list_id}/members/b@example.org",
            "operation_id": "put-b",
            "body": body,
        },
        {
            "method": "POST",
            "path": f"/lists/{setup.list_id}/members",
            "operation_id": "dup-b",
            "body": json.dumps({"email_address": "b@example.org", "status": "subscribed"}),
        },
        {
            "method": "POST",
            "path": f"/lists/{setup.list_id}/members/b@example.org/tags",
            "operation_id": "tag-b",
            "body": json.dumps({"tags": [{"name": "x", "status": "active"}]}),
        },
        {
            "method": "GET",
            "path": f"/lists/{setup.list_id}/members",
            "operation_id": "pull",
            "params": {"count": 1000, "fields": "members.email_address,total_items"},
        },
    ]


def test_batch_runs_to_finished_and_results_download_as_tar(setup: Setup) -> None:
    submitted = _submit(setup, _member_ops(setup))
    assert submitted["status"] == "pending"
    assert (
        submitted["total_operations"],
        submitted["completed_at"],
        submitted["response_body_url"],
    ) == (0, "", "")
    finished = _wait_finished(setup, submitted["id"])
    assert (
        finished["total_operations"],
        finished["finished_operations"],
        finished["errored_operations"],
    ) == (4, 4, 1)
    entries, items = _results(finished["response_body_url"])
    assert entries[0].isdir() and entries[0].name in ("./", ".")
    assert any(e.isfile() and e.size == 0 for e in entries)  # the empty-file quirk
    by_id = {item["operation_id"]: item for item in items}
    assert by_id["put-b"]["status_code"] == 200
    assert json.loads(by_id["put-b"]["response"])["email_address"] == "b@example.org"
    assert json.loads(by_id["dup-b"]["response"])["title"] == "Member Exists"
    assert (by_id["tag-b"]["status_code"], by_id["tag-b"]["response"]) == (204, "")
    assert json.loads(by_id["pull"]["response"])["total_items"] == 1
    seen = setup.control("GET", "/requests").json()
    assert seen["batch_operation_counts"]["PUT /lists/{list_id}/members/{subscriber_hash}"] == 1
    assert seen["counts"]["POST /batches"] == 1


def test_expired_or_tampered_results_url_is_403(setup: Setup) -> None:
    finished = _wait_finished(setup, _submit(setup, _member_ops(setup)[:1])["id"])
    url = finished["response_body_url"]
    assert requests.get(url.replace("signature=", "signature=0"), timeout=5).status_code == 403
    setup.sim.set_switches(batch_results_ttl_seconds=-5)
    expired = setup.session.get(setup.url(f"/batches/{finished['id']}")).json()
    assert requests.get(expired["response_body_url"], timeout=5).status_code == 403


def test_bad_envelope_is_invalid_resource_with_errors(setup: Setup) -> None:
    reply = setup.session.post(
        setup.url("/batches"),
        json={"operations": [{"method": "POST", "path": "/lists", "body": {"not": "a string"}}]},
    )
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["field"] == "operations.item:0.body"


def test_stuck_batches_and_more_than_500_pending_is_429(setup: Setup) -> None:
    setup.sim.set_switches(batch_stuck=True)
    for _ in range(500):
        _submit(setup, [])
    over = setup.session.post(setup.url("/batches"), json={"operations": []})
    assert (over.status_code, over.json()["title"]) == (429, "Too Many Requests")
    listed = setup.session.get(setup.url("/batches"), params={"count": 1000}).json()
    assert {b["status"] for b in listed["batches"]} == {"pending", "started"}
    assert listed["total_items"] == 500


def test_delete_stops_a_slow_batch(setup: Setup) -> None:
    setup.sim.set_switches(batch_operation_delay_seconds=0.05)
    batch = _submit(setup, [{"method": "GET", "path": "/ping"}] * 100)
    time.sleep(0.1)
    assert setup.session.get(setup.url(f"/batches/{batch['id']}")).json()["status"] == "started"
    deleted = setup.session.delete(setup.url(f"/batches/{batch['id']}"))
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert setup.session.get(setup.url(f"/batches/{batch['id']}")).status_code == 404


def test_batch_webhook_is_validated_then_posted_when_a_batch_finishes(
    setup: Setup, receiver: Receiver
) -> None:
    created = setup.session.post(setup.url("/batch-webhooks"), json={"url": receiver.url})
    assert created.status_code == 200
    assert receiver.requests[0]["method"] == "GET"
    hook_id = created.json()["id"]
    assert setup.session.get(setup.url("/batch-webhooks")).json()["total_items"] == 1
    batch = _submit(setup, _member_ops(setup)[:1])
    posts = receiver.wait_for(lambda posts: len(posts) == 1)
    form = posts[0]["form"]
    assert posts[0]["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert form["type"] == "batch_operation_completed"
    assert (form["data[id]"], form["data[status]"]) == (batch["id"], "finished")
    assert form["data[total_operations]"] == "1"
    assert form["data[response_body_url]"].startswith(setup.running.base_url)
    assert len(form["fired_at"]) == 19
    assert (
        setup.session.patch(
            setup.url(f"/batch-webhooks/{hook_id}"), json={"enabled": False}
        ).json()["enabled"]
        is False
    )
    assert setup.session.delete(setup.url(f"/batch-webhooks/{hook_id}")).status_code == 204


def test_batch_webhook_with_unreachable_url_is_refused(setup: Setup) -> None:
    reply = setup.session.post(
        setup.url("/batch-webhooks"), json={"url": "http://127.0.0.1:9/nothing"}
    )
    assert (reply.status_code, reply.json()["title"]) == (400, "Invalid Resource")
