import dataclasses

import pytest

from common.messages import ROUTES, FetchPage, MessageError, StartSync


def test_a_message_survives_the_wire() -> None:
    message = StartSync(list_id="a1b2c3d4e5", since="ever", max_time=0, stop_on="readyToFetch")

    assert StartSync.from_wire(message.to_wire()) == message


def test_missing_fields_take_their_defaults() -> None:
    assert StartSync.from_wire({"list_id": "a1b2c3d4e5"}).max_time == 300


@pytest.mark.parametrize(
    "payload",
    [
        {"list_id": "a1", "run_id": "r", "offset": "ten"},
        {"list_id": "a1", "run_id": "r", "offset": True},
        {"list_id": "a1", "run_id": "r", "offset": 0, "colour": "red"},
        {"list_id": "a1", "offset": 0},
    ],
    ids=["wrong type", "bool for int", "unknown field", "missing field"],
)
def test_a_malformed_message_is_refused_with_its_name(payload: dict[str, object]) -> None:
    with pytest.raises(MessageError, match="FetchPage"):
        FetchPage.from_wire(payload)


def test_every_route_names_a_distinct_actor_and_has_only_small_fields() -> None:
    actors = [(route.queue, route.actor) for route in ROUTES]

    assert len(set(actors)) == len(actors)
    for route in ROUTES:
        for field in dataclasses.fields(route):
            assert field.type in {"str", "int", "bool", "str | None", "int | None"}, field
