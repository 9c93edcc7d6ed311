"""Data plugins: discovery from entry points, explicit registration, combining outputs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from services.reconciler import plugins
from services.reconciler.decide import PluginData, TagChange
from services.reconciler.example_plugins import ContactNamesPlugin
from services.reconciler.plugins import DataPlugin, PluginOutput, PluginRow


class Fixed:
    """A plugin giving every row the same output."""

    def __init__(self, name: str, output: PluginOutput) -> None:
        self.name = name
        self.output = output

    def compute(self, conn: Any, rows: Sequence[PluginRow]) -> Mapping[int, PluginOutput]:
        return {row.cache_id: self.output for row in rows}


@pytest.fixture(autouse=True)
def no_registered_plugins() -> Iterator[None]:
    plugins.unregister_all()
    yield
    plugins.unregister_all()


def entry_points_of(*points: EntryPoint) -> Any:
    def fake(group: str) -> list[EntryPoint]:
        assert group == plugins.ENTRY_POINT_GROUP
        return list(points)

    return fake


def test_a_plugin_class_named_by_an_entry_point_is_discovered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point = EntryPoint(
        "contact_names",
        "services.reconciler.example_plugins:ContactNamesPlugin",
        plugins.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(plugins, "entry_points", entry_points_of(point))

    found = plugins.discover()

    assert [type(p) for p in found] == [ContactNamesPlugin]


def test_an_entry_point_that_is_not_a_plugin_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    point = EntryPoint("bad", "string:ascii_letters", plugins.ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", entry_points_of(point))

    with pytest.raises(TypeError, match="not a DataPlugin"):
        plugins.discover()


def test_registered_plugins_are_found_by_name_and_replace_discovered_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    point = EntryPoint(
        "contact_names",
        "services.reconciler.example_plugins:ContactNamesPlugin",
        plugins.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(plugins, "entry_points", entry_points_of(point))
    replacement = Fixed("contact_names", PluginOutput())
    plugins.register(Fixed("zeta", PluginOutput()))
    plugins.register(replacement)

    found = plugins.discover()

    assert [p.name for p in found] == ["contact_names", "zeta"]
    assert found[0] is replacement


def test_the_example_plugin_satisfies_the_protocol() -> None:
    assert isinstance(ContactNamesPlugin(), DataPlugin)


def test_outputs_combine_merge_fields_and_a_later_tag_replaces_an_earlier_one() -> None:
    first = PluginOutput({"merge_fields": {"FNAME": "Ada"}}, (TagChange("vip", "active"),))
    second = PluginOutput(
        {"merge_fields": {"LNAME": "L"}, "language": "en"}, (TagChange("vip", "inactive"),)
    )

    data = plugins.civicrm_data([first, second])

    assert data == {
        "mailchimp_updates": {"merge_fields": {"FNAME": "Ada", "LNAME": "L"}, "language": "en"},
        "tag_updates": [{"name": "vip", "status": "inactive"}],
    }
    assert PluginData.from_civicrm_data(data).tag_updates == (TagChange("vip", "inactive"),)
