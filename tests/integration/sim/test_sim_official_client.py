"""The official `mailchimp_marketing` client against the simulator."""

from __future__ import annotations

import hashlib
from typing import Any

import mailchimp_marketing as MailchimpMarketing
import pytest
from mailchimp_marketing.api_client import ApiClientError
from simtest_support import Setup

pytestmark = pytest.mark.integration


def _client(setup: Setup) -> Any:
    client = MailchimpMarketing.Client()
    client.set_config({"api_key": setup.api_key, "server": "us1"})
    client.api_client.host = setup.running.api_url
    return client


def test_official_client_reads_account_lists_and_interests(setup: Setup) -> None:
    client = _client(setup)
    assert client.ping.get() == {"health_status": "Everything's Chimpy!"}
    assert client.root.get_root()["account_name"] == "Test Org"
    lists = client.lists.get_all_lists(fields=["lists.id", "lists.stats.member_count"])
    assert lists["lists"] == [{"id": setup.list_id, "stats": {"member_count": 0}}]
    categories = client.lists.get_list_interest_categories(setup.list_id)["categories"]
    interests = client.lists.list_interest_category_interests(setup.list_id, categories[0]["id"])
    assert interests["total_items"] == 2


def test_official_client_member_writes_and_errors(setup: Setup) -> None:
    client = _client(setup)
    email = "ann@example.org"
    digest = hashlib.md5(email.encode()).hexdigest()
    added = client.lists.add_list_member(
        setup.list_id, {"email_address": email, "status": "subscribed"}
    )
    assert added["id"] == digest
    with pytest.raises(ApiClientError) as raised:
        client.lists.add_list_member(
            setup.list_id, {"email_address": email, "status": "subscribed"}
        )
    assert raised.value.status_code == 400
    assert "Member Exists" in raised.value.text
    upserted = client.lists.set_list_member(
        setup.list_id,
        digest,
        {"email_address": email, "status_if_new": "subscribed", "merge_fields": {"FNAME": "Ann"}},
    )
    assert upserted["merge_fields"]["FNAME"] == "Ann"
    updated = client.lists.update_list_member(setup.list_id, digest, {"status": "unsubscribed"})
    assert updated["status"] == "unsubscribed"
    client.lists.update_list_member_tags(
        setup.list_id, digest, {"tags": [{"name": "crm", "status": "active"}]}
    )
    assert client.lists.get_list_member_tags(setup.list_id, digest)["total_items"] == 1
    page = client.lists.get_list_members_info(
        setup.list_id, count=1000, since_last_changed="2000-01-01T00:00:00Z"
    )
    assert page["total_items"] == 1
    client.lists.delete_list_member(setup.list_id, digest)
    assert client.lists.get_list_member(setup.list_id, digest)["status"] == "archived"
    client.lists.delete_list_member_permanent(setup.list_id, digest)
    with pytest.raises(ApiClientError) as missing:
        client.lists.get_list_member(setup.list_id, digest)
    assert missing.value.status_code == 404


def test_official_client_batches(setup: Setup) -> None:
    client = _client(setup)
    batch = client.batches.start(
        {
            "operations": [
                {"method": "GET", "path": f"/lists/{setup.list_id}", "operation_id": "one"}
            ]
        }
    )
    assert (batch["status"], batch["total_operations"]) == ("pending", 0)
    assert client.batches.status(batch["id"])["id"] == batch["id"]
