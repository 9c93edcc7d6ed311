"""The Config screen's edits, as changes to the whole configuration ``updateconfig`` takes:
pure functions over its JSON shape (``services.admin.config_shape``), no I/O.

The screen reads the stored configuration on the server (API keys never reach the browser),
applies one edit and saves the whole with ``updateconfig``. A form carries the fingerprint
of the configuration it was made from, so a save over someone else's newer change is refused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Config = dict[str, Any]


class EditRefused(ValueError):
    """The edit names something the configuration does not hold (any more)."""


def fingerprint(config: Mapping[str, Any]) -> str:
    """A short digest of the whole configuration, keys included."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def account(config: Mapping[str, Any], index: int, name: object = None) -> Mapping[str, Any]:
    """The account at ``index``, if it still has ``name`` (the page was made from it; None:
    whichever it has)."""
    accounts = config["accounts"]
    if not 0 <= index < len(accounts) or name not in (None, accounts[index]["name"]):
        raise EditRefused("that account is no longer configured: reload the page")
    found: Mapping[str, Any] = accounts[index]
    return found


def add_account(config: Mapping[str, Any], name: str, api_key: str) -> Config:
    """The configuration with a new account (no connections yet) at the end."""
    changed = copy.deepcopy(dict(config))
    changed["accounts"].append({"name": name, "api_key": api_key, "connections": []})
    return changed


def remove_account(config: Mapping[str, Any], index: int, name: str) -> Config:
    account(config, index, name)
    changed = copy.deepcopy(dict(config))
    del changed["accounts"][index]
    return changed


@dataclass(frozen=True)
class ConnectionForm:
    """What the connection form says: the subscription group, the options, and a CRM group
    (or none) with a trust override per interest id, in the audience's order."""

    list_id: str
    subscription_group_id: str
    data_sync: bool
    trust_override: str
    interests: tuple[tuple[str, str, str], ...]  # (interest id, group id or "", override)

    def connection(self) -> dict[str, Any]:
        """As ``updateconfig`` takes it; ids the model then checks (a 400 at their field)."""
        return {
            "mailchimp_list_id": self.list_id,
            "subscription_group_id": _number(self.subscription_group_id),
            "data_sync": self.data_sync,
            "trust_override": self.trust_override,
            "interests": [
                {"interest_id": interest, "group_id": _number(group), "trust_override": trust}
                for interest, group, trust in self.interests
                if group
            ],
        }

    def field_of(self, message: str) -> str:
        """The form field a refusal of the saved configuration names ("form" if none)."""
        mapped = [i for i in self.interests if i[1]]
        where = re.search(r"connections\[\d+\]\.interests\[(\d+)\]", message)
        if where and int(where.group(1)) < len(mapped):
            return f"interest_{mapped[int(where.group(1))][0]}"
        if "a group is used twice" in message:
            return self._repeated_group()
        if "subscription_group_id" in message:
            return "subscription_group_id"
        if "trust_override" in message:
            return "trust_override"
        missing = re.search(r"no CRM group has the id ([\d, ]+)", message)
        if missing:
            ids = {part.strip() for part in missing.group(1).split(",")}
            if self.subscription_group_id in ids:
                return "subscription_group_id"
            for interest, group, _ in self.interests:
                if group in ids:
                    return f"interest_{interest}"
        return "form"

    def _repeated_group(self) -> str:
        """The field of the first group chosen again (after the subscription group's)."""
        seen = {self.subscription_group_id}
        for interest, group, _ in self.interests:
            if group and group in seen:
                return f"interest_{interest}"
            seen.add(group)
        return "subscription_group_id"


def set_connection(
    config: Mapping[str, Any], index: int, name: str, form: ConnectionForm
) -> Config:
    """The configuration with the audience's connection under the account added or replaced."""
    account(config, index, name)
    changed = copy.deepcopy(dict(config))
    connections = changed["accounts"][index]["connections"]
    new = form.connection()
    for position, old in enumerate(connections):
        if old["mailchimp_list_id"] == form.list_id:
            connections[position] = new
            return changed
    connections.append(new)
    return changed


def remove_connection(config: Mapping[str, Any], index: int, name: str, list_id: str) -> Config:
    found = account(config, index, name)
    if not any(c["mailchimp_list_id"] == list_id for c in found["connections"]):
        raise EditRefused(f"the audience {list_id} is not connected: reload the page")
    changed = copy.deepcopy(dict(config))
    connections = changed["accounts"][index]["connections"]
    connections[:] = [c for c in connections if c["mailchimp_list_id"] != list_id]
    return changed


def connection_of(config: Mapping[str, Any], list_id: str) -> Mapping[str, Any] | None:
    for found in config["accounts"]:
        for connection in found["connections"]:
            if connection["mailchimp_list_id"] == list_id:
                result: Mapping[str, Any] = connection
                return result
    return None


def interest_choices(audience: Mapping[str, Any]) -> Sequence[tuple[str, str, str]]:
    """(category title, interest id, interest name) of an audience of ``fetchaccountinfo``."""
    return [
        (category.get("title") or "", interest["id"], interest.get("name") or interest["id"])
        for category in audience.get("interest_categories", [])
        for interest in category.get("interests", [])
    ]


def _number(value: str) -> int | str:
    """An id as a number when it is one; else as given, for the model to refuse by name."""
    return int(value) if value.isascii() and value.isdigit() and len(value) < 12 else value
