"""The seed's ``fetchandreconcile`` request, shared by the command line and the admin API."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from common.db import config
from common.db.config import SyncConnection
from common.messages import StartSync
from common.runs import InvalidRunParameter, parse_max_time, parse_since, parse_stop_on


@dataclass(frozen=True)
class SyncRequest:
    """The seed's ``fetchandreconcile`` parameters."""

    group_id: int | None = None
    since: str | None = None
    max_time: int = 300
    stop_on: str | None = None
    force_restart: bool = False
    with_data: bool = False

    def validate(self) -> None:
        """Raise InvalidRunParameter (its message names the parameter) if one is malformed."""
        parse_stop_on(self.stop_on)
        parse_max_time(self.max_time)
        if self.since and self.since != "ever":
            parse_since(self.since)

    def message(self, list_id: str) -> StartSync:
        """The StartSync that asks the fetcher to start (or resume) this audience's run."""
        return StartSync(
            list_id=list_id,
            since=self.since,
            max_time=self.max_time,
            stop_on=self.stop_on,
            force_restart=self.force_restart,
            with_data=self.with_data,
        )


class NothingToSync(InvalidRunParameter):
    """No sync connection matches the request."""


def select_connections(conn: sa.Connection, group_id: int | None) -> list[SyncConnection]:
    """Every sync connection, or the one of ``group_id``; NothingToSync when none matches."""
    found = config.load_connections(conn, group_id=group_id)
    if not found:
        which = f"group {group_id}" if group_id is not None else "any group"
        raise NothingToSync(f"group_id: no sync connection is configured for {which}")
    return found
