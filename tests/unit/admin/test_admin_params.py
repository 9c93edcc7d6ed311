"""The admin actions' parameter models, error messages, paths and config shape (no servers)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.admin import crm_actions, registry
from services.admin.app import action_path
from services.admin.config_shape import ConfigShape, config_json, parse_config
from services.admin.context import ParamError
from services.admin.crm_actions import (
    CacheGetParams,
    FetchAndReconcileParams,
    GetStatusParams,
    IncludeInSyncParams,
    json_safe,
)
from services.admin.params import parse

API_KEY = "0123456789abcdef0123456789abcdef-us1"


def test_every_registry_action_has_a_forbidding_params_model_and_a_summary() -> None:
    for action in registry.ACTIONS.values():
        assert action.params.model_config.get("extra") == "forbid", action.name
        assert action.summary


def test_the_database_actions_are_the_seeds() -> None:
    assert [a.name for a in crm_actions.ACTIONS] == [
        "fetchandreconcile",
        "getstatus",
        "includeinsync",
        "updateconfig",
        "MailchimpsyncCache.get",
    ]


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("fetchandreconcile", "/api/Mailchimpsync/fetchandreconcile"),
        ("MailchimpsyncCache.get", "/api/MailchimpsyncCache/get"),
    ],
)
def test_action_paths_follow_the_seed_entity_and_action(name: str, path: str) -> None:
    assert action_path(name) == path


def test_fetchandreconcile_defaults_are_the_seeds() -> None:
    params = parse(FetchAndReconcileParams, {})
    assert isinstance(params, FetchAndReconcileParams)
    assert (params.max_time, params.since, params.stop_on, params.group_id) == (
        300,
        None,
        None,
        None,
    )
    assert not params.force_restart and not params.with_data


@pytest.mark.parametrize("key", ["group_id", "id"])
def test_id_is_an_alias_of_group_id(key: str) -> None:
    params = parse(FetchAndReconcileParams, {key: "12"})
    assert isinstance(params, FetchAndReconcileParams) and params.group_id == 12


@pytest.mark.parametrize("since", ["ever", "2019-12-11", "2019-12-11T10:00:00+01:00"])
def test_since_takes_ever_or_a_date(since: str) -> None:
    params = parse(FetchAndReconcileParams, {"since": since})
    assert isinstance(params, FetchAndReconcileParams) and params.request().since == since


@pytest.mark.parametrize("flag", [1, "1", True, "true"])
def test_boolean_parameters_take_the_seeds_1(flag: Any) -> None:
    params = parse(GetStatusParams, {"batches": flag})
    assert isinstance(params, GetStatusParams) and params.batches is True


@pytest.mark.parametrize(
    ("model", "data", "param", "says"),
    [
        (FetchAndReconcileParams, {"stop_on": "x"}, "stop_on", "must be one of readyToFetch"),
        (FetchAndReconcileParams, {"max_time": 2**40}, "max_time", "less than or equal"),
        (FetchAndReconcileParams, {"group_id": 0}, "group_id", "greater than 0"),
        (IncludeInSyncParams, {}, "contact_id", "required"),
        (IncludeInSyncParams, {"contact_id": 1, "other": 2}, "other", "unknown parameter"),
        (CacheGetParams, {"mailchimp_email": "\ud800"}, "mailchimp_email", ""),
        (CacheGetParams, {"troubleshoot": "maybe"}, "troubleshoot", "boolean"),
    ],
)
def test_a_refusal_names_the_parameter_first(
    model: Any, data: dict[str, Any], param: str, says: str
) -> None:
    with pytest.raises(ParamError) as refused:
        parse(model, data)
    assert refused.value.param == param
    assert refused.value.message.startswith(f"{param}: ")
    assert says in refused.value.message


def test_json_safe_turns_dates_into_iso_strings() -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert json_safe({"a": [when], "b": (1, None)}) == {"a": [when.isoformat()], "b": [1, None]}


# --- the config shape -------------------------------------------------------------------------


def _config(**connection: Any) -> str:
    base = {"mailchimp_list_id": "a1b2c3d4e5", "subscription_group_id": 3}
    account = {"name": "Org", "api_key": API_KEY, "connections": [{**base, **connection}]}
    return json.dumps({"accounts": [account]})


def test_a_config_round_trips_through_its_json_shape() -> None:
    text = _config(interests=[{"interest_id": "i1", "group_id": 4, "trust_override": "CiviCRM"}])
    shape = parse_config(text)
    assert ConfigShape.model_validate(config_json(shape.setups())) == shape
    assert shape.group_ids() == {3, 4}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            _config(subscription_group_id="three"),
            "accounts[0].connections[0].subscription_group_id",
        ),
        (_config(trust_override="Both"), "accounts[0].connections[0].trust_override"),
        (_config(interests=[{"interest_id": "i", "group_id": 3}]), "a group is used twice"),
        (_config(colour="red"), "colour"),
        ("{}", "accounts"),
        ("[1, 2", "not valid JSON"),
        ("[" * 50_000 + "]" * 50_000, "not valid JSON"),
    ],
)
def test_a_bad_config_says_where(text: str, says: str) -> None:
    with pytest.raises(ParamError) as refused:
        parse_config(text)
    assert refused.value.param == "config"
    assert says in refused.value.message


@given(st.text(max_size=200))
def test_any_text_as_config_is_parsed_or_refused_as_a_param_error(text: str) -> None:
    try:
        parse_config(text)
    except ParamError as refused:
        assert refused.param == "config"
