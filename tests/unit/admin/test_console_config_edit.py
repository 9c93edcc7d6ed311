"""The Config screen's edits to the whole configuration, and refusals mapped to fields."""

from __future__ import annotations

from typing import Any

import pytest

from services.admin.console import config_edit
from services.admin.console.config_edit import ConnectionForm, EditRefused

KEY = "0123456789abcdef0123456789abcdef-us1"


def stored() -> dict[str, Any]:
    return {
        "accounts": [
            {
                "name": "Org",
                "api_key": KEY,
                "connections": [
                    {
                        "mailchimp_list_id": "list1",
                        "subscription_group_id": 3,
                        "data_sync": False,
                        "trust_override": "",
                        "interests": [],
                    }
                ],
            }
        ]
    }


def form(**changes: Any) -> ConnectionForm:
    values: dict[str, Any] = {
        "list_id": "list2",
        "subscription_group_id": "4",
        "data_sync": True,
        "trust_override": "Mailchimp",
        "interests": (("int1", "5", ""), ("int2", "", "CiviCRM"), ("int3", "6", "CiviCRM")),
    }
    return ConnectionForm(**{**values, **changes})


def test_a_new_connection_is_added_with_only_the_interests_given_a_group() -> None:
    changed = config_edit.set_connection(stored(), 0, "Org", form())
    assert changed["accounts"][0]["connections"][1] == {
        "mailchimp_list_id": "list2",
        "subscription_group_id": 4,
        "data_sync": True,
        "trust_override": "Mailchimp",
        "interests": [
            {"interest_id": "int1", "group_id": 5, "trust_override": ""},
            {"interest_id": "int3", "group_id": 6, "trust_override": "CiviCRM"},
        ],
    }
    assert len(stored()["accounts"][0]["connections"]) == 1  # the original is left as it was


def test_an_existing_connection_is_replaced_in_place() -> None:
    changed = config_edit.set_connection(stored(), 0, "Org", form(list_id="list1"))
    [only] = changed["accounts"][0]["connections"]
    assert only["subscription_group_id"] == 4


def test_an_edit_of_an_account_that_moved_or_went_is_refused() -> None:
    with pytest.raises(EditRefused):
        config_edit.set_connection(stored(), 0, "Another name", form())
    with pytest.raises(EditRefused):
        config_edit.remove_account(stored(), 3, "Org")
    with pytest.raises(EditRefused):
        config_edit.remove_connection(stored(), 0, "Org", "not-connected")


def test_an_account_is_found_by_its_position_and_if_given_its_name() -> None:
    assert config_edit.account(stored(), 0)["name"] == "Org"
    assert config_edit.account(stored(), 0, "Org")["name"] == "Org"
    with pytest.raises(EditRefused):
        config_edit.account(stored(), -1)


def test_removing_and_adding_accounts_and_connections() -> None:
    assert (
        config_edit.remove_connection(stored(), 0, "Org", "list1")["accounts"][0]["connections"]
        == []
    )
    assert config_edit.remove_account(stored(), 0, "Org") == {"accounts": []}
    added = config_edit.add_account(stored(), "Second", "fedc-us2")
    assert added["accounts"][1] == {"name": "Second", "api_key": "fedc-us2", "connections": []}


def test_the_fingerprint_changes_with_any_change_even_of_a_key() -> None:
    other = stored()
    other["accounts"][0]["api_key"] = KEY.replace("0", "1")
    assert config_edit.fingerprint(stored()) == config_edit.fingerprint(stored())
    assert config_edit.fingerprint(stored()) != config_edit.fingerprint(other)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (
            "config: accounts[0].connections[1].subscription_group_id: Input should be",
            "subscription_group_id",
        ),
        (
            "config: accounts[0].connections[1].interests[1].group_id: Input should be",
            "interest_int3",
        ),
        (
            "config: accounts[0].connections[1]: a group is used twice (subscription...)",
            "subscription_group_id",
        ),
        ("config: no CRM group has the id 6", "interest_int3"),
        ("config: no CRM group has the id 4, 5", "subscription_group_id"),
        ("config: subscription_group_id 4 appears more than once", "subscription_group_id"),
        ("config: something else entirely", "form"),
    ],
)
def test_a_refusal_is_shown_at_the_field_it_names(message: str, field: str) -> None:
    assert form().field_of(message) == field


def test_a_group_used_twice_is_shown_at_the_field_that_repeats_it() -> None:
    used_twice = "config: accounts[0].connections[1]: a group is used twice"
    again = (("int1", "5", ""), ("int2", "4", ""), ("int3", "5", ""))
    assert form(interests=again).field_of(used_twice) == "interest_int2"
    later = (("int1", "5", ""), ("int2", "", ""), ("int3", "5", ""))
    assert form(interests=later).field_of(used_twice) == "interest_int3"


def test_ids_that_are_not_numbers_go_to_the_model_as_given_to_be_refused_by_name() -> None:
    assert form(subscription_group_id="4x").connection()["subscription_group_id"] == "4x"
    assert form(subscription_group_id="").connection()["subscription_group_id"] == ""
