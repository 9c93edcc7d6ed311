"""Resource JSON shapes (§2.2, §3, §4) and `fields` / `exclude_fields` projection."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sim.mailchimp.model import (
    ARCHIVED,
    CLEANED,
    SUBSCRIBED,
    UNSUBSCRIBED,
    Audience,
    Member,
)
from sim.mailchimp.rules import iso

FieldTree = dict[str, "FieldTree"]

_UNSUBSCRIBE_REASONS = {
    "contact": "N/A (Unsubscribed by contact)",
    "admin": "N/A (Unsubscribed by admin)",
    "api": "N/A (Unsubscribed by API)",
}
_LOCATION = {
    "latitude": 0,
    "longitude": 0,
    "gmtoff": 0,
    "dstoff": 0,
    "country_code": "",
    "timezone": "",
    "region": "",
}


def parse_field_list(value: str | None) -> FieldTree | None:
    """`members.id,members.merge_fields.FNAME` -> nested dict; a leaf is an empty dict."""
    if not value:
        return None
    tree: FieldTree = {}
    for path in value.split(","):
        node = tree
        for part in path.strip().split("."):
            if part:
                node = node.setdefault(part, {})
    return tree


def project(value: Any, tree: FieldTree) -> Any:
    """Keep only the paths in `tree` (lists are projected item by item)."""
    if not tree:
        return value
    if isinstance(value, list):
        return [project(item, tree) for item in value]
    if isinstance(value, dict):
        return {k: project(value[k], sub) for k, sub in tree.items() if k in value}
    return value


def exclude(value: Any, tree: FieldTree) -> Any:
    """Drop the paths in `tree`, in place, and return the value."""
    if isinstance(value, list):
        for item in value:
            exclude(item, tree)
    elif isinstance(value, dict):
        for key, sub in tree.items():
            if key not in value:
                continue
            if sub:
                exclude(value[key], sub)
            else:
                del value[key]
    return value


def shape(value: dict[str, Any], fields: FieldTree | None, excluded: FieldTree | None) -> Any:
    """Apply `fields` then `exclude_fields` to a rendered resource."""
    if fields:
        value = project(value, fields)
    if excluded:
        value = exclude(value, excluded)
    return value


def unique_email_id(member: Member) -> str:
    # Derived, not stored: same for the same address across lists, as in Mailchimp.
    return member.id[-10:]


def web_id(member: Member) -> int:
    return int(member.id[:7], 16)


def _merge_fields(member: Member, audience: Audience) -> dict[str, Any]:
    merges = member.merges
    return {
        spec.tag: merges[n] if n < len(merges) else ""
        for n, spec in enumerate(audience.merge_fields)
    }


def _interests(member: Member, audience: Audience) -> dict[str, bool]:
    values = member.interests or ()
    return {
        interest_id: values[n] if n < len(values) else False
        for n, interest_id in enumerate(audience.interest_ids)
    }


def _tags(member: Member, audience: Audience) -> list[dict[str, Any]]:
    if not member.tags:
        return []
    names = {tag.id: tag.name for tag in audience.tags.values()}
    return [{"id": tag_id, "name": names.get(tag_id, "")} for tag_id in member.tags]


def _full_name(member: Member, audience: Audience) -> str:
    fields = _merge_fields(member, audience)
    return f"{fields.get('FNAME', '')} {fields.get('LNAME', '')}".strip()


MemberRenderer = Callable[[Member, Audience], Any]

MEMBER_FIELDS: dict[str, MemberRenderer] = {
    "id": lambda m, a: m.id,
    "email_address": lambda m, a: m.email,
    "unique_email_id": lambda m, a: unique_email_id(m),
    "contact_id": lambda m, a: m.id,
    "full_name": _full_name,
    "web_id": lambda m, a: web_id(m),
    "email_type": lambda m, a: m.email_type,
    "status": lambda m, a: m.status,
    "consents_to_one_to_one_messaging": lambda m, a: True,
    "merge_fields": _merge_fields,
    "interests": _interests,
    "stats": lambda m, a: {"avg_open_rate": 0, "avg_click_rate": 0},
    "ip_signup": lambda m, a: m.ip_signup,
    "timestamp_signup": lambda m, a: iso(m.timestamp_signup),
    "ip_opt": lambda m, a: m.ip_opt,
    "timestamp_opt": lambda m, a: iso(m.timestamp_opt),
    "member_rating": lambda m, a: 2,
    "last_changed": lambda m, a: iso(m.last_changed),
    "language": lambda m, a: m.language,
    "vip": lambda m, a: m.vip,
    "email_client": lambda m, a: "",
    "location": lambda m, a: dict(_LOCATION),
    "source": lambda m, a: m.source,
    "tags_count": lambda m, a: len(m.tags or ()),
    "tags": _tags,
    "list_id": lambda m, a: a.id,
    "_links": lambda m, a: [],
    "unsubscribe_reason": lambda m, a: _unsubscribe_reason(m),
}


class _Absent:
    """Marker: the key is left out (e.g. unsubscribe_reason on subscribed members)."""


_ABSENT = _Absent()


def _unsubscribe_reason(member: Member) -> Any:
    if member.status != UNSUBSCRIBED:
        return _ABSENT
    return _UNSUBSCRIBE_REASONS.get(member.unsubscribed_by or "", "")


def member_keys(audience: Audience) -> list[str]:
    """Top-level member keys for this audience (`interests` only with interest categories)."""
    keys = list(MEMBER_FIELDS)
    if not audience.categories:
        keys.remove("interests")
    return keys


def render_member(
    member: Member, audience: Audience, fields: FieldTree | None = None
) -> dict[str, Any]:
    """The member object, building only the top-level keys `fields` asks for."""
    return render_planned(member, audience, member_plan(audience, fields))


MemberPlan = list[tuple[str, MemberRenderer, FieldTree]]


def member_plan(audience: Audience, fields: FieldTree | None) -> MemberPlan:
    """Work out once per page which renderers to call (and what to project under them)."""
    keys = member_keys(audience)
    if fields:
        keys = [k for k in keys if k in fields]
    return [(k, MEMBER_FIELDS[k], fields.get(k, {}) if fields else {}) for k in keys]


def render_planned(member: Member, audience: Audience, plan: MemberPlan) -> dict[str, Any]:
    """A member rendered by a plan from `member_plan` (same result as `render_member`)."""
    body = {}
    for key, renderer, subtree in plan:
        value = renderer(member, audience)
        if value is _ABSENT:
            continue
        body[key] = project(value, subtree) if subtree else value
    return body


def render_list(audience: Audience) -> dict[str, Any]:
    """A list (audience) object with live stats."""
    counts = audience.counts
    return {
        "id": audience.id,
        "web_id": audience.web_id,
        "name": audience.name,
        "contact": {
            "company": "",
            "address1": "",
            "address2": "",
            "city": "",
            "state": "",
            "zip": "",
            "country": "US",
            "phone": "",
        },
        "permission_reminder": "You signed up on our website.",
        "use_archive_bar": True,
        "campaign_defaults": {"from_name": "", "from_email": "", "subject": "", "language": "en"},
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": iso(audience.date_created),
        "list_rating": 0,
        "email_type_option": False,
        "subscribe_url_short": "",
        "subscribe_url_long": "",
        "beamer_address": "",
        "visibility": "prv",
        "double_optin": audience.double_optin,
        "has_welcome": False,
        "marketing_permissions": False,
        "modules": [],
        "stats": {
            "member_count": counts[SUBSCRIBED],
            "unsubscribe_count": counts[UNSUBSCRIBED],
            "cleaned_count": counts[CLEANED],
            "member_count_since_send": counts[SUBSCRIBED],
            "unsubscribe_count_since_send": counts[UNSUBSCRIBED],
            "cleaned_count_since_send": counts[CLEANED],
            "campaign_count": 0,
            "campaign_last_sent": "",
            "merge_field_count": len(audience.merge_fields),
            "avg_sub_rate": 0,
            "avg_unsub_rate": 0,
            "target_sub_rate": 0,
            "open_rate": 0,
            "click_rate": 0,
            "last_sub_date": iso(audience.last_sub),
            "last_unsub_date": iso(audience.last_unsub),
            "total_contacts": sum(v for k, v in counts.items() if k != ARCHIVED),
        },
        "_links": [],
    }
