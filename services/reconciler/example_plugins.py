"""An example data plugin: merge fields from the contact's names, a tag from its source.

Register it under the entry-point group ``mcsync.data_plugins``, e.g.
``contact_names = "services.reconciler.example_plugins:ContactNamesPlugin"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from common.db import crm
from services.reconciler.decide import TagChange
from services.reconciler.plugins import PluginOutput, PluginRow

ACTIVE = "active"


class ContactNamesPlugin:
    """``FNAME``/``LNAME`` from the contact's first/last name; tag ``source: <source>``.

    One query per chunk (``crm.contact_details``). Rows without a contact get nothing;
    empty names are sent as empty strings so that Mailchimp forgets a removed name.
    """

    name = "contact_names"

    def compute(self, conn: sa.Connection, rows: Sequence[PluginRow]) -> Mapping[int, PluginOutput]:
        """Merge fields and a source tag for each row with a known contact."""
        ids = [row.contact_id for row in rows if row.contact_id is not None]
        details = crm.contact_details(conn, ids)
        return {
            row.cache_id: _output(details[row.contact_id])
            for row in rows
            if row.contact_id is not None and row.contact_id in details
        }


def _output(contact: crm.ContactDetails) -> PluginOutput:
    merge_fields = {"FNAME": contact.first_name or "", "LNAME": contact.last_name or ""}
    tags = (TagChange(f"source: {contact.source}", ACTIVE),) if contact.source else ()
    return PluginOutput(mailchimp_updates={"merge_fields": merge_fields}, tag_updates=tags)
