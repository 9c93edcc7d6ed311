"""The simulator over HTTP with plain `requests`: shapes, status codes, errors."""

from __future__ import annotations

import base64
import hashlib

import pytest
import requests
from simtest_support import Setup

pytestmark = pytest.mark.integration

JANE = "jane.doe@example.org"
JANE_HASH = hashlib.md5(JANE.encode()).hexdigest()


def _create_jane(s: Setup) -> requests.Response:
    return s.session.post(
        s.url("/lists/{list}/members"),
        json={
            "email_address": JANE,
            "status": "subscribed",
            "merge_fields": {"FNAME": "Jane", "LNAME": "Doe"},
        },
    )


def test_account_and_ping(setup: Setup) -> None:
    root = setup.session.get(setup.url("/"))
    assert root.status_code == 200
    assert root.headers["Content-Type"] == "application/json; charset=utf-8"
    assert root.json()["account_name"] == "Test Org"
    assert setup.session.get(setup.url("/ping")).json() == {"health_status": "Everything's Chimpy!"}


@pytest.mark.parametrize("scheme", ["apikey", "Bearer"])
def test_apikey_and_bearer_authorization_are_accepted(setup: Setup, scheme: str) -> None:
    reply = requests.get(
        setup.url("/ping"), headers={"Authorization": f"{scheme} {setup.api_key}"}, timeout=5
    )
    assert reply.status_code == 200


def test_bad_key_is_401_problem_json_with_request_id(setup: Setup) -> None:
    token = base64.b64encode(b"user:" + b"0" * 32 + b"-us1").decode()
    reply = requests.get(
        setup.url("/lists"), headers={"Authorization": f"Basic {token}"}, timeout=5
    )
    assert reply.status_code == 401
    assert reply.headers["Content-Type"] == "application/problem+json; charset=utf-8"
    body = reply.json()
    assert body["title"] == "API Key Invalid"
    assert body["instance"] == reply.headers["X-Request-Id"]
    assert requests.get(setup.url("/ping"), timeout=5).status_code == 401


def test_lists_interest_categories_and_merge_fields(setup: Setup) -> None:
    lists = setup.session.get(setup.url("/lists"), params={"fields": "lists.id,lists.name"}).json()
    assert lists == {"lists": [{"id": setup.list_id, "name": "Newsletter"}]}
    categories = setup.session.get(setup.url("/lists/{list}/interest-categories")).json()
    assert categories["total_items"] == 1
    category_id = categories["categories"][0]["id"]
    interests = setup.session.get(
        setup.url(f"/lists/{{list}}/interest-categories/{category_id}/interests")
    ).json()
    assert [i["name"] for i in interests["interests"]] == ["Events", "News"]
    assert interests["interests"][0]["subscriber_count"] == "0"
    merge = setup.session.get(setup.url("/lists/{list}/merge-fields")).json()
    assert [f["tag"] for f in merge["merge_fields"]] == ["FNAME", "LNAME"]
    assert setup.session.get(setup.url("/lists/0000000000")).status_code == 404


def test_member_lifecycle_status_codes(setup: Setup) -> None:
    s, member = setup, setup.url(f"/lists/{{list}}/members/{JANE_HASH}")
    created = _create_jane(s)
    assert created.status_code == 200
    assert created.json()["id"] == JANE_HASH
    assert set(created.json()["interests"]) == set(s.sim.audience(s.list_id).interest_ids)
    exists = _create_jane(s)
    assert (exists.status_code, exists.json()["title"]) == (400, "Member Exists")
    assert s.session.get(setup.url("/lists/{list}/members/" + JANE)).json()["id"] == JANE_HASH
    patched = s.session.patch(member, json={"merge_fields": {"FNAME": "Janet"}})
    assert patched.json()["merge_fields"]["FNAME"] == "Janet"
    put = s.session.put(
        member,
        json={"email_address": JANE, "status_if_new": "subscribed", "status": "unsubscribed"},
    )
    assert put.json()["status"] == "unsubscribed"
    assert put.json()["unsubscribe_reason"]
    resubscribed = s.session.patch(member, json={"status": "subscribed"})
    assert resubscribed.status_code == 200  # unsubscribed by API may come back
    deleted = s.session.delete(member)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert deleted.headers["Content-Type"] == "application/json"
    again = s.session.delete(member)
    assert (again.status_code, again.headers["Allow"]) == (405, "GET, PUT")
    assert s.session.get(member).json()["status"] == "archived"
    forget = s.session.post(member + "/actions/delete-permanent")
    assert forget.status_code == 204
    assert s.session.get(member).status_code == 404
    revived = _create_jane(s)
    assert (revived.status_code, revived.json()["title"]) == (400, "Forgotten Email Not Subscribed")


def test_compliance_state_after_contact_unsubscribe(setup: Setup) -> None:
    _create_jane(setup)
    acted = setup.control(
        "POST",
        f"/lists/{setup.list_id}/members/{JANE}/actions/unsubscribe",
        json={"source": "user"},
    )
    assert acted.json() == {"events": ["unsubscribe"]}
    reply = setup.session.patch(
        setup.url(f"/lists/{{list}}/members/{JANE_HASH}"), json={"status": "subscribed"}
    )
    assert (reply.status_code, reply.json()["title"]) == (400, "Member In Compliance State")


def test_invalid_merge_field_reports_errors_array(setup: Setup) -> None:
    setup.sim.audience(setup.list_id).merge_fields[1].type = "number"
    reply = setup.session.post(
        setup.url("/lists/{list}/members"),
        json={"email_address": JANE, "status": "subscribed", "merge_fields": {"LNAME": "abc"}},
    )
    assert reply.status_code == 400
    assert reply.json()["errors"] == [{"field": "LNAME", "message": "Please enter a number"}]


def test_tags_endpoint(setup: Setup) -> None:
    _create_jane(setup)
    tags = setup.url(f"/lists/{{list}}/members/{JANE_HASH}/tags")
    posted = setup.session.post(tags, json={"tags": [{"name": "crm", "status": "active"}]})
    assert (posted.status_code, posted.content) == (204, b"")
    assert setup.session.get(tags).json()["tags"][0]["name"] == "crm"
    missing = setup.url("/lists/{list}/members/" + "0" * 32 + "/tags")
    assert setup.session.post(missing, json={"tags": []}).status_code == 404


def test_unknown_route_404_and_wrong_method_405(setup: Setup) -> None:
    assert setup.session.get(setup.url("/nothing-here")).status_code == 404
    reply = setup.session.put(setup.url("/lists"))
    assert (reply.status_code, reply.headers["Allow"]) == (405, "GET")


def test_members_paging_filters_and_fields(setup: Setup) -> None:
    imported = setup.control(
        "POST",
        f"/lists/{setup.list_id}/members/import",
        json=[
            {
                "email": f"p{n}@example.org",
                "status": "subscribed" if n % 2 else "cleaned",
                "last_changed": f"2024-05-01T10:00:{n:02d}+00:00",
            }
            for n in range(30)
        ],
    )
    assert imported.json() == {"imported": 30}
    pages = []
    for offset in (0, 10, 20):
        page = setup.session.get(
            setup.url("/lists/{list}/members"),
            params={
                "count": 10,
                "offset": offset,
                "status": "subscribed",
                "since_last_changed": "2024-05-01T10:00:03+0000",
                "sort_field": "last_changed",
                "sort_dir": "ASC",
                "fields": "members.email_address,total_items",
            },
        ).json()
        pages.append(page)
    assert pages[0]["total_items"] == 13
    emails = [m["email_address"] for p in pages for m in p["members"]]
    assert emails == [f"p{n}@example.org" for n in range(5, 30, 2)]
    assert (
        setup.session.get(setup.url("/lists/{list}/members"), params={"count": 1001}).status_code
        == 400
    )


def test_control_dump_and_request_counts(setup: Setup) -> None:
    _create_jane(setup)
    setup.session.get(setup.url("/lists/{list}/members"))
    dump = setup.control("GET", f"/lists/{setup.list_id}/members").json()
    assert dump["counts"]["subscribed"] == 1
    assert dump["members"][0]["unsubscribed_by"] == ""
    counts = setup.control("GET", "/requests").json()["counts"]
    assert counts["POST /lists/{list_id}/members"] == 1
    assert counts["GET /lists/{list_id}/members"] == 1
