"""Data plugins: one-way CRM -> Mailchimp data (merge fields, tags), for the data stage.

A plugin computes, for a chunk of cache rows at once, what Mailchimp should hold: member
data to merge into the update (``mailchimp_updates``, e.g. ``{"merge_fields": {...}}``) and
tags to set (``tag_updates``). It may read the CRM through ``common.db.crm`` with the
connection it is given, and must be set-based (a few queries per chunk, never one per row)
and pure in effect: it writes nothing.

Plugins are found from the entry-point group ``mcsync.data_plugins`` (each entry point loads
a plugin instance, or a class/factory called with no arguments) and from explicit
registration (``register``), which tests use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import sqlalchemy as sa

from services.reconciler.decide import TagChange

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "mcsync.data_plugins"


@dataclass(frozen=True, slots=True)
class PluginRow:
    """A cache row whose plugin data is computed: its contact and Mailchimp identity."""

    cache_id: int
    contact_id: int | None
    member_id: str | None
    email: str | None
    mailchimp_status: str | None


@dataclass(frozen=True, slots=True)
class PluginOutput:
    """One plugin's data for one row."""

    mailchimp_updates: Mapping[str, Any] = field(default_factory=dict)
    tag_updates: Sequence[TagChange] = ()


@runtime_checkable
class DataPlugin(Protocol):
    """Computes one-way data for a chunk of rows; rows absent from the result get none."""

    name: str

    def compute(
        self, conn: sa.Connection, rows: Sequence[PluginRow]
    ) -> Mapping[int, PluginOutput]: ...


_registered: dict[str, DataPlugin] = {}


def register(plugin: DataPlugin) -> None:
    """Register a plugin explicitly (replaces one of the same name)."""
    _registered[plugin.name] = plugin


def unregister_all() -> None:
    """Forget every explicitly registered plugin (for tests)."""
    _registered.clear()


def discover() -> list[DataPlugin]:
    """Plugins from the ``mcsync.data_plugins`` entry points, then registered ones.

    A plugin of the same name registered explicitly replaces the discovered one; the
    result is ordered by name so that runs are reproducible.
    """
    found = {plugin.name: plugin for plugin in _from_entry_points()}
    found.update(_registered)
    return [found[name] for name in sorted(found)]


def _from_entry_points() -> list[DataPlugin]:
    plugins = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        plugin = _instantiate(point.load())
        if not isinstance(plugin, DataPlugin):
            raise TypeError(f"entry point {point.name!r} is not a DataPlugin: {plugin!r}")
        plugins.append(plugin)
    return plugins


def _instantiate(loaded: object) -> object:
    # An entry point may name an instance or a class/factory; a class is called, an instance
    # (which has ``compute`` bound) is used as it is.
    if callable(loaded) and (isinstance(loaded, type) or not isinstance(loaded, DataPlugin)):
        factory: Callable[[], object] = loaded
        return factory()
    return loaded


def civicrm_data(outputs: Sequence[PluginOutput]) -> dict[str, Any]:
    """Combine the plugins' outputs for one row into ``civicrm_data``.

    ``mailchimp_updates`` are layered one level deep in plugin order (so two plugins' merge
    fields combine); ``tag_updates`` are concatenated, a later plugin's tag replacing an
    earlier one of the same name.
    """
    updates: dict[str, Any] = {}
    tags: dict[str, str] = {}
    for output in outputs:
        for key, value in output.mailchimp_updates.items():
            below = updates.get(key)
            if isinstance(value, Mapping) and isinstance(below, Mapping):
                updates[key] = {**below, **value}
            else:
                updates[key] = dict(value) if isinstance(value, Mapping) else value
        for tag in output.tag_updates:
            tags[tag.name] = tag.status
    tag_list = [{"name": name, "status": status} for name, status in tags.items()]
    return {"mailchimp_updates": updates, "tag_updates": tag_list}
