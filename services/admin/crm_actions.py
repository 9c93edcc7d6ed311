"""The seed actions that work on our database: fetchandreconcile, getstatus, includeinsync,
updateconfig and MailchimpsyncCache.get."""

from __future__ import annotations

from services.admin.context import Action

ACTIONS: tuple[Action, ...] = ()
