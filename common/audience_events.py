"""Mailchimp's audience webhook events, as the webhooks service stores them in the inbox and
the reconciler reads them back: one definition for both ends.

Pure: standard library and ``common.vocabulary`` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class AudienceEventType(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    PROFILE = "profile"
    CLEANED = "cleaned"
    UPEMAIL = "upemail"
    CAMPAIGN = "campaign"


# The events that change a member; ``campaign`` is acknowledged and ignored.
MEMBER_EVENTS = frozenset(AudienceEventType) - {AudienceEventType.CAMPAIGN}


@dataclass(frozen=True)
class AudienceEvent:
    """One audience event. ``email`` is the member's address (for ``upemail``: the new one,
    with the old in ``old_email``). Names are None when the payload carried no merges."""

    type: AudienceEventType
    list_id: str
    email: str
    fired_at: datetime | None = None
    old_email: str = ""
    first_name: str | None = None
    last_name: str | None = None
    reason: str = ""
    action: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type.value,
            "list_id": self.list_id,
            "email": self.email,
            "fired_at": self.fired_at.isoformat() if self.fired_at else None,
            "old_email": self.old_email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "reason": self.reason,
            "action": self.action,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AudienceEvent:
        fired_at = data.get("fired_at")
        return cls(
            type=AudienceEventType(data["type"]),
            list_id=str(data["list_id"]),
            email=str(data["email"]),
            fired_at=datetime.fromisoformat(fired_at) if fired_at else None,
            old_email=str(data.get("old_email") or ""),
            first_name=data.get("first_name"),
            last_name=data.get("last_name"),
            reason=str(data.get("reason") or ""),
            action=str(data.get("action") or ""),
        )
