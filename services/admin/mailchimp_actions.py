"""The seed actions that talk to Mailchimp: abortsync, fetchaccountinfo and updatewebhook."""

from __future__ import annotations

from services.admin.context import Action

ACTIONS: tuple[Action, ...] = ()
