"""The JSON shape of ``updateconfig``'s ``config``: every account with its sync connections.

```json
{"accounts": [{"name": "Example Org", "api_key": "<32 hex>-us1", "connections": [
    {"mailchimp_list_id": "a1b2c3d4e5", "subscription_group_id": 12, "data_sync": false,
     "trust_override": "", "interests": [
        {"interest_id": "9f8e7d6c5b", "group_id": 14, "trust_override": ""}]}]}]}
```

The posted configuration is the whole configuration: what it leaves out is removed.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.db.config import AccountSetup, ConnectionSetup, InterestMapping
from common.mailchimp import API_KEY_PATTERN
from common.vocabulary import TrustOverride
from services.admin.context import ParamError
from services.admin.params import RowId, Text

MailchimpId = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z_-]+$")]


class InterestShape(BaseModel):
    """A Mailchimp interest kept in step with membership of a CRM group."""

    model_config = ConfigDict(extra="forbid")

    interest_id: MailchimpId
    group_id: RowId
    trust_override: TrustOverride = TrustOverride.NONE


class ConnectionShape(BaseModel):
    """One audience <-> one CRM subscription group."""

    model_config = ConfigDict(extra="forbid")

    mailchimp_list_id: MailchimpId
    subscription_group_id: RowId
    data_sync: bool = False
    trust_override: TrustOverride = TrustOverride.NONE
    interests: list[InterestShape] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _groups_used_once(self) -> ConnectionShape:
        interest_ids = [i.interest_id for i in self.interests]
        groups = [self.subscription_group_id, *(i.group_id for i in self.interests)]
        if len(set(interest_ids)) < len(interest_ids):
            raise ValueError("an interest is mapped twice")
        if len(set(groups)) < len(groups):
            raise ValueError("a group is used twice (subscription group or interest groups)")
        return self


class AccountShape(BaseModel):
    """A Mailchimp account (its API key) and its sync connections."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, Field(min_length=1)]
    api_key: Annotated[str, Field(pattern=API_KEY_PATTERN.pattern)]
    connections: list[ConnectionShape] = Field(default_factory=list, max_length=1000)


class ConfigShape(BaseModel):
    """The whole configuration."""

    model_config = ConfigDict(extra="forbid")

    accounts: list[AccountShape] = Field(max_length=1000)

    @model_validator(mode="after")
    def _each_once(self) -> ConfigShape:
        connections = [c for a in self.accounts for c in a.connections]
        for what, values in (
            ("api_key", [a.api_key for a in self.accounts]),
            ("mailchimp_list_id", [c.mailchimp_list_id for c in connections]),
            ("subscription_group_id", [str(c.subscription_group_id) for c in connections]),
        ):
            repeated = sorted(v for v, n in Counter(values).items() if n > 1)
            if repeated:
                raise ValueError(f"{what} {', '.join(repeated)} appears more than once")
        return self

    def setups(self) -> list[AccountSetup]:
        return [
            AccountSetup(
                name=a.name,
                api_key=a.api_key,
                connections=tuple(
                    ConnectionSetup(
                        list_id=c.mailchimp_list_id,
                        subscription_group_id=c.subscription_group_id,
                        data_sync=c.data_sync,
                        trust_override=c.trust_override,
                        interests=tuple(
                            InterestMapping(i.interest_id, i.group_id, i.trust_override)
                            for i in c.interests
                        ),
                    )
                    for c in a.connections
                ),
            )
            for a in self.accounts
        ]

    def group_ids(self) -> set[int]:
        return {
            group
            for a in self.accounts
            for c in a.connections
            for group in (c.subscription_group_id, *(i.group_id for i in c.interests))
        }


def parse_config(text: str) -> ConfigShape:
    """``config`` as posted (a JSON string); a ParamError on ``config`` saying where it is
    wrong (``accounts[0].connections[1].subscription_group_id: ...``)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ParamError(f"config: not valid JSON ({error})", "config") from None
    try:
        return ConfigShape.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = _path(first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ParamError(f"config: {where}{': ' if where else ''}{message}", "config") from None


def _path(location: tuple[int | str, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in location).lstrip(".")


def config_json(accounts: list[AccountSetup]) -> dict[str, Any]:
    """The stored configuration in the shape ``updateconfig`` takes."""
    return {
        "accounts": [
            {
                "name": a.name,
                "api_key": a.api_key,
                "connections": [
                    {
                        "mailchimp_list_id": c.list_id,
                        "subscription_group_id": c.subscription_group_id,
                        "data_sync": c.data_sync,
                        "trust_override": c.trust_override.value,
                        "interests": [
                            {
                                "interest_id": i.interest_id,
                                "group_id": i.group_id,
                                "trust_override": i.trust_override.value,
                            }
                            for i in c.interests
                        ],
                    }
                    for c in a.connections
                ],
            }
            for a in accounts
        ]
    }
