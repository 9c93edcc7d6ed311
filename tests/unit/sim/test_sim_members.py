"""The simulator's member rules and paging, driven in-process through the service layer."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from sim.mailchimp import Simulator
from sim.mailchimp.model import Account, Audience, subscriber_hash


class Clock:
    """A settable clock so last_changed values are predictable."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


class Harness:
    def __init__(self) -> None:
        self.clock = Clock()
        self.sim = Simulator(clock=self.clock)
        self.account: Account = self.sim.create_account()
        self.audience: Audience = self.sim.create_list(
            self.account.api_key,
            merge_fields=[
                {"tag": "FNAME", "type": "text"},
                {"tag": "LNAME", "type": "text"},
                {"tag": "LTV", "type": "number"},
                {"tag": "JOINED", "type": "date"},
                {"tag": "ADDRESS", "type": "address"},
            ],
        )

    def call(self, method: str, path: str, body: Any = None, **query: str) -> tuple[int, Any]:
        raw = orjson.dumps(body) if body is not None else None
        path = path.replace("{list}", self.audience.id)
        reply = self.sim.execute(self.account, method, path, query, raw, "http://sim")
        return reply.status, reply.body

    def add(self, email: str, status: str = "subscribed", **extra: Any) -> dict[str, Any]:
        code, body = self.call(
            "POST", "/lists/{list}/members", {"email_address": email, "status": status, **extra}
        )
        assert code == 200, body
        self.clock.tick()
        return body  # type: ignore[no-any-return]


@pytest.fixture
def h() -> Iterator[Harness]:
    yield Harness()


def test_member_id_is_md5_of_unicode_lowercased_email(h: Harness) -> None:
    body = h.add("Zoë.Ü@Example.org")
    assert body["id"] == subscriber_hash("zoë.ü@example.org")
    assert body["email_address"] == "Zoë.Ü@Example.org"


def test_member_json_has_unset_timestamps_as_empty_strings_and_no_interests(h: Harness) -> None:
    body = h.add("a@example.org", status="pending")
    assert body["timestamp_opt"] == ""
    assert body["last_changed"].endswith("+00:00")
    assert "interests" not in body
    assert body["merge_fields"] == {
        "FNAME": "",
        "LNAME": "",
        "LTV": "",
        "JOINED": "",
        "ADDRESS": "",
    }


def test_post_existing_member_is_member_exists(h: Harness) -> None:
    h.add("a@example.org")
    code, body = h.call(
        "POST", "/lists/{list}/members", {"email_address": "A@example.org", "status": "subscribed"}
    )
    assert (code, body["title"]) == (400, "Member Exists")


def test_post_revives_an_archived_member(h: Harness) -> None:
    member = h.add("a@example.org")
    assert h.call("DELETE", f"/lists/{{list}}/members/{member['id']}") == (204, None)
    code, body = h.call(
        "POST", "/lists/{list}/members", {"email_address": "a@example.org", "status": "pending"}
    )
    assert (code, body["status"]) == (200, "pending")


@pytest.mark.parametrize("status", ["archived", "pending", "cleaned"])
def test_delete_of_archived_pending_or_cleaned_is_405_with_allow(h: Harness, status: str) -> None:
    h.sim.import_members(h.audience.id, [{"email": "a@example.org", "status": status}])
    reply = h.sim.execute(
        h.account, "DELETE", f"/lists/{h.audience.id}/members/a@example.org", {}, None, ""
    )
    assert reply.status == 405
    assert reply.headers["Allow"] == "GET, PUT"


def test_subscribing_a_contact_unsubscribe_is_refused_but_pending_is_accepted(h: Harness) -> None:
    h.sim.import_members(
        h.audience.id,
        [{"email": "a@example.org", "status": "unsubscribed", "unsubscribed_by": "contact"}],
    )
    code, body = h.call("PATCH", "/lists/{list}/members/a@example.org", {"status": "subscribed"})
    assert (code, body["title"]) == (400, "Member In Compliance State")
    code, body = h.call("PATCH", "/lists/{list}/members/a@example.org", {"status": "pending"})
    assert (code, body["status"]) == (200, "pending")


def test_api_unsubscribe_can_be_resubscribed_unless_switched_off(h: Harness) -> None:
    member = h.add("a@example.org")
    path = f"/lists/{{list}}/members/{member['id']}"
    assert h.call("PATCH", path, {"status": "unsubscribed"})[0] == 200
    h.sim.set_switches(refuse_resubscribe_after_admin_unsubscribe=True)
    assert (
        h.call("PATCH", path, {"status": "subscribed"})[1]["title"] == "Member In Compliance State"
    )
    h.sim.set_switches(refuse_resubscribe_after_admin_unsubscribe=False)
    assert h.call("PATCH", path, {"status": "subscribed"})[1]["status"] == "subscribed"


def test_cleaned_member_cannot_be_resubscribed(h: Harness) -> None:
    h.sim.import_members(h.audience.id, [{"email": "a@example.org", "status": "cleaned"}])
    code, body = h.call(
        "PUT",
        "/lists/{list}/members/a@example.org",
        {"email_address": "a@example.org", "status": "subscribed"},
    )
    assert (code, body["title"]) == (400, "Member In Compliance State")


def test_transactional_member_can_be_subscribed(h: Harness) -> None:
    h.sim.import_members(h.audience.id, [{"email": "a@example.org", "status": "transactional"}])
    code, body = h.call("PATCH", "/lists/{list}/members/a@example.org", {"status": "subscribed"})
    assert (code, body["status"]) == (200, "subscribed")


def test_put_to_unknown_hash_creates_under_the_body_email_hash(h: Harness) -> None:
    code, body = h.call(
        "PUT",
        "/lists/{list}/members/" + "0" * 32,
        {"email_address": "new@example.org", "status_if_new": "subscribed"},
    )
    assert (code, body["id"]) == (200, subscriber_hash("new@example.org"))
    code, body = h.call(
        "PUT",
        "/lists/{list}/members/" + "1" * 32,
        {"email_address": "new@example.org", "status_if_new": "subscribed"},
    )
    assert (code, body["title"]) == (400, "Member Exists")


def test_delete_permanent_leaves_a_tombstone(h: Harness) -> None:
    member = h.add("gone@example.org")
    path = f"/lists/{{list}}/members/{member['id']}"
    assert h.call("POST", path + "/actions/delete-permanent") == (204, None)
    assert h.call("GET", path)[0] == 404
    code, body = h.call(
        "PUT", path, {"email_address": "gone@example.org", "status_if_new": "subscribed"}
    )
    assert (code, body["title"]) == (400, "Forgotten Email Not Subscribed")


def test_a_forgotten_contact_can_sign_up_again_themselves(h: Harness) -> None:
    member = h.add("gone@example.org")
    h.call("POST", f"/lists/{{list}}/members/{member['id']}/actions/delete-permanent")
    events = h.sim.act(h.audience.id, "gone@example.org", "subscribe", "user", {})
    assert [e.kind for e in events] == ["subscribe"]
    assert h.call("GET", f"/lists/{{list}}/members/{member['id']}")[1]["status"] == "subscribed"


def test_patch_with_a_new_address_renames_the_member(h: Harness) -> None:
    member = h.add("old@example.org")
    h.clock.tick(10)
    code, body = h.call(
        "PATCH", f"/lists/{{list}}/members/{member['id']}", {"email_address": "new@example.org"}
    )
    assert (code, body["id"]) == (200, subscriber_hash("new@example.org"))
    assert body["last_changed"] > member["last_changed"]
    assert h.call("GET", f"/lists/{{list}}/members/{member['id']}")[0] == 404


def test_patch_of_missing_member_is_404(h: Harness) -> None:
    code, body = h.call("PATCH", "/lists/{list}/members/" + "0" * 32, {"status": "subscribed"})
    assert (code, body["title"]) == (404, "Resource Not Found")


@pytest.mark.parametrize(
    ("merge_fields", "field", "message"),
    [
        ({"LTV": "lots"}, "LTV", "Please enter a number"),
        ({"JOINED": "yesterday"}, "JOINED", "Please enter a date"),
        ({"ADDRESS": {"addr1": "1 Road"}}, "ADDRESS", "Please enter a complete address"),
    ],
)
def test_invalid_merge_values_are_invalid_resource_with_errors(
    h: Harness, merge_fields: dict[str, Any], field: str, message: str
) -> None:
    code, body = h.call(
        "POST",
        "/lists/{list}/members",
        {"email_address": "a@example.org", "status": "subscribed", "merge_fields": merge_fields},
    )
    assert (code, body["title"]) == (400, "Invalid Resource")
    assert body["errors"] == [{"field": field, "message": message}]


def test_numbers_are_stored_as_numbers_and_unknown_tags_ignored(h: Harness) -> None:
    body = h.add("a@example.org", merge_fields={"LTV": "668.3", "NOPE": "x"})
    assert body["merge_fields"]["LTV"] == 668.3
    assert "NOPE" not in body["merge_fields"]


def test_required_merge_field_missing_unless_skip_merge_validation(h: Harness) -> None:
    h.audience.merge_fields[0].required = True
    new = {"email_address": "a@example.org", "status": "subscribed"}
    code, body = h.call("POST", "/lists/{list}/members", new)
    assert body["errors"] == [{"field": "FNAME", "message": "Please enter a value"}]
    code, body = h.call("POST", "/lists/{list}/members", new, skip_merge_validation="true")
    assert code == 200


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "", "two@@example.org"])
def test_invalid_email_is_refused(h: Harness, email: str) -> None:
    code, body = h.call(
        "POST", "/lists/{list}/members", {"email_address": email, "status": "subscribed"}
    )
    assert (code, body["detail"]) == (400, "Please provide a valid email address.")


def test_fake_address_deny_list(h: Harness) -> None:
    h.sim.set_switches(fake_email_patterns=["@mailinator.com"])
    code, body = h.call(
        "POST",
        "/lists/{list}/members",
        {"email_address": "x@mailinator.com", "status": "subscribed"},
    )
    assert (code, body["title"]) == (400, "Invalid Resource")
    assert "looks fake or invalid" in body["detail"]


def test_last_changed_moves_only_when_something_changes(h: Harness) -> None:
    member = h.add("a@example.org", merge_fields={"FNAME": "Ann"})
    path = f"/lists/{{list}}/members/{member['id']}"
    h.clock.tick(60)
    same = h.call("PATCH", path, {"merge_fields": {"FNAME": "Ann"}})[1]
    assert same["last_changed"] == member["last_changed"]
    changed = h.call("PATCH", path, {"merge_fields": {"FNAME": "Anne"}})[1]
    assert changed["last_changed"] > member["last_changed"]


def test_tags_add_remove_and_non_member_404(h: Harness) -> None:
    member = h.add("a@example.org")
    path = f"/lists/{{list}}/members/{member['id']}/tags"
    body = {"tags": [{"name": "VIP", "status": "active"}, {"name": "old", "status": "active"}]}
    assert h.call("POST", path, body) == (204, None)
    assert h.call("POST", path, {"tags": [{"name": "old", "status": "inactive"}]})[0] == 204
    assert [t["name"] for t in h.call("GET", path)[1]["tags"]] == ["VIP"]
    missing = "/lists/{list}/members/" + "0" * 32 + "/tags"
    assert h.call("POST", missing, body)[0] == 404


def test_member_with_legacy_mixed_case_id_is_found_by_email_not_by_lower_hash(h: Harness) -> None:
    # old audiences hashed the address without lower-casing it
    legacy_id = hashlib.md5(b"Old@Example.org").hexdigest()
    h.sim.import_members(h.audience.id, [{"email": "Old@Example.org", "id": legacy_id}])
    assert h.call("GET", "/lists/{list}/members/" + subscriber_hash("old@example.org"))[0] == 404
    assert h.call("GET", "/lists/{list}/members/Old@Example.org")[1]["id"] == legacy_id
    assert h.call("GET", f"/lists/{{list}}/members/{legacy_id}")[0] == 200
    code, body = h.call(
        "POST",
        "/lists/{list}/members",
        {"email_address": "old@example.org", "status": "subscribed"},
    )
    assert (code, body["title"]) == (400, "Member Exists")


# ---- paging --------------------------------------------------------------------------------


def _seed_changes(h: Harness, n: int) -> list[str]:
    emails = [f"m{i}@example.org" for i in range(n)]
    records = [
        {
            "email": e,
            "status": "subscribed" if i % 3 else "unsubscribed",
            "last_changed": f"2024-01-01T00:00:{i:02d}+00:00",
        }
        for i, e in enumerate(emails)
    ]
    h.sim.import_members(h.audience.id, records)
    return emails


def test_paging_returns_every_member_once_in_last_changed_order(h: Harness) -> None:
    emails = _seed_changes(h, 25)
    seen: list[str] = []
    for offset in range(0, 30, 10):
        body = h.call(
            "GET",
            "/lists/{list}/members",
            count="10",
            offset=str(offset),
            sort_field="last_changed",
            sort_dir="ASC",
        )[1]
        assert body["total_items"] == 25
        seen += [m["email_address"] for m in body["members"]]
    assert seen == emails


def test_since_last_changed_is_strictly_after_in_every_format(h: Harness) -> None:
    _seed_changes(h, 10)
    for since in (
        "2024-01-01T00:00:04+00:00",
        "2024-01-01T00:00:04+0000",
        "2024-01-01T00:00:04.000Z",
        "2024-01-01T00:00:04Z",
    ):
        body = h.call("GET", "/lists/{list}/members", since_last_changed=since)[1]
        assert body["total_items"] == 5, since
    body = h.call(
        "GET",
        "/lists/{list}/members",
        since_last_changed="2024-01-01T00:00:03.5Z",
        before_last_changed="2024-01-01T00:00:06+00:00",
    )[1]
    assert [m["email_address"] for m in body["members"]] == ["m4@example.org", "m5@example.org"]


def test_descending_sort_and_status_filter(h: Harness) -> None:
    _seed_changes(h, 9)
    body = h.call("GET", "/lists/{list}/members", status="unsubscribed", sort_dir="DESC")[1]
    assert [m["email_address"] for m in body["members"]] == [
        "m6@example.org",
        "m3@example.org",
        "m0@example.org",
    ]
    assert body["total_items"] == 3


def test_a_write_moves_the_member_after_everyone_in_incremental_paging(h: Harness) -> None:
    _seed_changes(h, 5)
    h.clock.now = 1_800_000_000.0
    h.call("PATCH", "/lists/{list}/members/m1@example.org", {"merge_fields": {"FNAME": "X"}})
    body = h.call("GET", "/lists/{list}/members", since_last_changed="2024-01-01T00:00:02Z")[1]
    assert [m["email_address"] for m in body["members"]] == [
        "m3@example.org",
        "m4@example.org",
        "m1@example.org",
    ]


def test_count_above_1000_is_400(h: Harness) -> None:
    assert h.call("GET", "/lists/{list}/members", count="1001")[0] == 400


def test_archived_members_listed_without_status_filter_behind_a_switch(h: Harness) -> None:
    h.sim.import_members(
        h.audience.id,
        [{"email": "a@example.org"}, {"email": "b@example.org", "status": "archived"}],
    )
    assert h.call("GET", "/lists/{list}/members")[1]["total_items"] == 2
    h.sim.set_switches(list_archived_without_status=False)
    assert h.call("GET", "/lists/{list}/members")[1]["total_items"] == 1
    assert h.call("GET", "/lists/{list}/members", status="archived")[1]["total_items"] == 1


def test_fields_and_exclude_fields_with_members_prefix(h: Harness) -> None:
    h.add("a@example.org", merge_fields={"FNAME": "Ann", "LNAME": "Lee"})
    body = h.call(
        "GET", "/lists/{list}/members", fields="members.id,members.merge_fields.FNAME,total_items"
    )[1]
    assert body == {
        "members": [{"id": subscriber_hash("a@example.org"), "merge_fields": {"FNAME": "Ann"}}],
        "total_items": 1,
    }
    body = h.call(
        "GET", "/lists/{list}/members", exclude_fields="_links,members._links,members.merge_fields"
    )[1]
    assert "_links" not in body
    assert "merge_fields" not in body["members"][0]
    assert "email_address" in body["members"][0]


def test_list_stats_follow_member_statuses(h: Harness) -> None:
    _seed_changes(h, 9)
    stats = h.call("GET", "/lists/{list}")[1]["stats"]
    assert (stats["member_count"], stats["unsubscribe_count"], stats["cleaned_count"]) == (6, 3, 0)


def test_seeding_is_deterministic() -> None:
    def seeded() -> list[tuple[str, str]]:
        sim = Simulator(clock=Clock())
        account = sim.create_account()
        audience = sim.create_list(account.api_key)
        sim.seed_members(audience.id, 500, seed=7)
        return [(m.email, m.status) for m in audience.index.everyone]

    first = seeded()
    assert first == seeded()
    assert {status for _, status in first} >= {"subscribed", "unsubscribed", "cleaned"}
