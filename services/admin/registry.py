"""Every admin action, by its seed name."""

from __future__ import annotations

from collections.abc import Mapping

from services.admin import crm_actions, mailchimp_actions
from services.admin.context import Action

ACTIONS: Mapping[str, Action] = {
    action.name: action for action in (*crm_actions.ACTIONS, *mailchimp_actions.ACTIONS)
}
