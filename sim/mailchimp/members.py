"""Member writes: the rules of §2 applied to an Audience. Shared by HTTP routes, batch
operations and the control API, so all three behave the same.

Every write returns the MemberEvents it caused so the caller can fire audience webhooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sim.mailchimp import errors, rules
from sim.mailchimp.model import (
    ARCHIVED,
    BY_ADMIN,
    BY_API,
    BY_CONTACT,
    CLEANED,
    PENDING,
    SUBSCRIBED,
    UNSUBSCRIBED,
    Audience,
    Member,
    subscriber_hash,
)

_OPTIONAL_ATTRS = ("email_type", "ip_signup", "ip_opt", "language", "vip")


@dataclass(frozen=True)
class Policy:
    """The switches that change member rules."""

    refuse_after_admin_unsubscribe: bool = False
    fake_email_patterns: Sequence[str] = ()


@dataclass(frozen=True)
class MemberEvent:
    """Something an audience webhook reports: kind is subscribe/unsubscribe/profile/
    cleaned/upemail; `source` is user/admin/api; `extra` holds kind-specific data."""

    kind: str
    source: str
    audience: Audience
    member: Member
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class WriteResult:
    member: Member
    events: list[MemberEvent]


def resolve(audience: Audience, slot: str) -> Member | None:
    """The member addressed by a path slot: an id, or the email address itself."""
    if "@" in slot:
        return audience.find_by_email(slot)
    return audience.members.get(slot.lower())


def require(audience: Audience, slot: str) -> Member:
    member = resolve(audience, slot)
    if member is None:
        raise errors.not_found()
    return member


def _body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise errors.schema_invalid([{"field": "", "message": "Schema describes object"}])
    return body


def _timestamp_or_none(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    return rules.parse_timestamp(value, name) if value else None


def _new_member(audience: Audience, email: str, status: str, now: float) -> Member:
    return Member(
        id=subscriber_hash(email),
        email=email,
        status=status,
        merges=("",) * len(audience.merge_fields),
        interests=rules.interest_values(audience.interest_ids, None, None),
        last_changed=now,
        rank=audience.take_rank(),
        timestamp_signup=None,
    )


def _planned_changes(
    audience: Audience, member: Member, body: dict[str, Any], check_required: bool
) -> dict[str, Any]:
    """Attribute -> new value for everything the body asks to change."""
    planned: dict[str, Any] = {}
    merges = rules.merge_values(
        audience.merge_fields, member.merges, body.get("merge_fields"), check_required
    )
    if merges != member.merges:
        planned["merges"] = merges
    interests = rules.interest_values(
        audience.interest_ids, member.interests, body.get("interests")
    )
    if interests != member.interests:
        planned["interests"] = interests
    for attr in _OPTIONAL_ATTRS:
        if attr in body and body[attr] != getattr(member, attr):
            planned[attr] = body[attr]
    for stamp in ("timestamp_opt", "timestamp_signup"):
        if body.get(stamp):
            planned[stamp] = _timestamp_or_none(body, stamp)
    return planned


def _status_changes(member: Member, status: str | None, by: str, now: float) -> dict[str, Any]:
    if status is None or status == member.status:
        return {}
    planned: dict[str, Any] = {"status": status}
    if status == SUBSCRIBED:
        planned["timestamp_opt"] = now
        planned["unsubscribed_by"] = None
    elif status == UNSUBSCRIBED:
        planned["unsubscribed_by"] = by
    return planned


def _events_for(
    audience: Audience, member: Member, before: dict[str, Any], source: str, created: bool
) -> list[MemberEvent]:
    """Which webhook events a change amounts to."""
    events: list[MemberEvent] = []
    status_changed = created or before.get("status", member.status) != member.status
    if status_changed and member.status == SUBSCRIBED:
        events.append(MemberEvent("subscribe", source, audience, member))
    elif status_changed and member.status == UNSUBSCRIBED:
        extra = (("action", "unsub"), ("reason", "manual"))
        events.append(MemberEvent("unsubscribe", source, audience, member, extra))
    elif status_changed and member.status == CLEANED:
        events.append(MemberEvent("cleaned", source, audience, member, (("reason", "hard"),)))
    elif status_changed and member.status == ARCHIVED:
        extra = (("action", "delete"), ("reason", "manual"))
        events.append(MemberEvent("unsubscribe", source, audience, member, extra))
    elif not created and "merges" in before:
        events.append(MemberEvent("profile", source, audience, member))
    return events


def _apply(
    audience: Audience, member: Member, planned: dict[str, Any], now: float, source: str
) -> list[MemberEvent]:
    """Apply planned changes (bumping last_changed only when something changes)."""
    if not planned:
        return []
    before = {attr: getattr(member, attr) for attr in planned}

    def mutate(target: Member) -> None:
        for attr, value in planned.items():
            setattr(target, attr, value)

    audience.change(member, now, mutate)
    _note_list_dates(audience, member, before, now)
    return _events_for(audience, member, before, source, created=False)


def _note_list_dates(
    audience: Audience, member: Member, before: dict[str, Any], now: float
) -> None:
    if "status" not in before:
        return
    if member.status == SUBSCRIBED:
        audience.last_sub = now
    elif member.status == UNSUBSCRIBED:
        audience.last_unsub = now


def _create(
    audience: Audience,
    email: str,
    status: str,
    body: dict[str, Any],
    now: float,
    check_required: bool,
    source: str,
) -> WriteResult:
    member = _new_member(audience, email, status, now)
    planned = _planned_changes(audience, member, body, check_required)
    planned.update(_status_changes(member, None, BY_API, now))
    for attr, value in planned.items():
        setattr(member, attr, value)
    member.timestamp_signup = member.timestamp_signup or now
    if status == SUBSCRIBED:
        member.timestamp_opt = member.timestamp_opt or now
        audience.last_sub = now
    if status == UNSUBSCRIBED:
        member.unsubscribed_by = BY_API if source == "api" else BY_ADMIN
    for name in body.get("tags") or []:
        member.tags = {**(member.tags or {}), audience.tag_named(str(name)).id: now}
    audience.insert(member)
    return WriteResult(member, _events_for(audience, member, {}, source, created=True))


def _check_not_forgotten(audience: Audience, email: str) -> None:
    if subscriber_hash(email) in audience.tombstones:
        raise errors.forgotten(email)


def create_member(
    audience: Audience, body: Any, policy: Policy, now: float, skip_merge_validation: bool
) -> WriteResult:
    """POST /lists/{id}/members: create, or revive an archived member."""
    body = _body_object(body)
    email = rules.validate_email(body.get("email_address"), policy.fake_email_patterns)
    status = rules.validate_status(body.get("status"))
    _check_not_forgotten(audience, email)
    existing = audience.find_by_email(email)
    if existing is None:
        return _create(audience, email, status, body, now, not skip_merge_validation, "api")
    if existing.status != ARCHIVED:
        raise errors.member_exists(email)
    return _update(audience, existing, body, status, policy, now, check_required=False)


def _update(
    audience: Audience,
    member: Member,
    body: dict[str, Any],
    status: str | None,
    policy: Policy,
    now: float,
    check_required: bool,
) -> WriteResult:
    if status is not None:
        rules.check_status_change(member, status, policy.refuse_after_admin_unsubscribe)
    planned = _planned_changes(audience, member, body, check_required)
    planned.update(_status_changes(member, status, BY_API, now))
    new_email = body.get("email_address")
    renamed_from = None
    if new_email and new_email != member.email:
        renamed_from = member.email
        _rename(audience, member, rules.validate_email(new_email, policy.fake_email_patterns))
        planned["email"] = member.email  # makes _apply bump last_changed
    events = _apply(audience, member, planned, now, "api")
    if renamed_from is not None and renamed_from.lower() != member.email.lower():
        extra = (("old_email", renamed_from), ("new_email", member.email))
        events.append(MemberEvent("upemail", "api", audience, member, extra))
    return WriteResult(member, events)


def _rename(audience: Audience, member: Member, new_email: str) -> None:
    """Change a member's address; its id follows (a different address is another hash)."""
    if new_email.lower() == member.email.lower():
        member.email = new_email
        return
    if audience.find_by_email(new_email) is not None:
        raise errors.member_exists(new_email)
    del audience.members[member.id]
    audience.aliases.pop(subscriber_hash(member.email), None)
    member.email = new_email
    member.id = subscriber_hash(new_email)
    audience.members[member.id] = member


def upsert_member(
    audience: Audience,
    slot: str,
    body: Any,
    policy: Policy,
    now: float,
    skip_merge_validation: bool,
) -> WriteResult:
    """PUT /lists/{id}/members/{hash}: update, or create under the hash of the body email."""
    body = _body_object(body)
    member = resolve(audience, slot)
    if member is None or member.status == ARCHIVED:
        return _upsert_new(audience, member, body, policy, now, skip_merge_validation)
    status = body.get("status")
    if status is not None:
        status = rules.validate_status(status)
    return _update(audience, member, body, status, policy, now, check_required=False)


def _upsert_new(
    audience: Audience,
    archived: Member | None,
    body: dict[str, Any],
    policy: Policy,
    now: float,
    skip_merge_validation: bool,
) -> WriteResult:
    email = body.get("email_address") or (archived.email if archived else None)
    email = rules.validate_email(email, policy.fake_email_patterns)
    raw_status = body.get("status_if_new") or body.get("status")
    status = rules.validate_status(raw_status, "status_if_new")
    _check_not_forgotten(audience, email)
    if archived is not None:
        return _update(audience, archived, body, status, policy, now, check_required=False)
    if audience.find_by_email(email) is not None:
        raise errors.member_exists(email)
    return _create(audience, email, status, body, now, not skip_merge_validation, "api")


def patch_member(
    audience: Audience, slot: str, body: Any, policy: Policy, now: float
) -> WriteResult:
    """PATCH /lists/{id}/members/{hash}: partial update of an existing member."""
    body = _body_object(body)
    member = require(audience, slot)
    status = body.get("status")
    if status is not None:
        status = rules.validate_status(status)
    return _update(audience, member, body, status, policy, now, check_required=False)


def archive_member(audience: Audience, slot: str, now: float) -> list[MemberEvent]:
    """DELETE /lists/{id}/members/{hash}: archive; archived/pending/cleaned -> 405."""
    member = require(audience, slot)
    if member.status in (ARCHIVED, PENDING, CLEANED):
        raise errors.cannot_archive()
    return _apply(audience, member, {"status": ARCHIVED}, now, "api")


def delete_permanently(audience: Audience, slot: str) -> list[MemberEvent]:
    """delete-permanent: erase the member and remember the address as forgotten."""
    member = require(audience, slot)
    audience.discard(member)
    audience.tombstones.add(subscriber_hash(member.email))
    extra = (("action", "delete"), ("reason", "manual"))
    return [MemberEvent("unsubscribe", "api", audience, member, extra)]


def update_tags(audience: Audience, slot: str, body: Any, now: float) -> None:
    """POST .../tags: `active` adds (creating the list tag), `inactive` removes."""
    body = _body_object(body)
    member = require(audience, slot)
    wanted = body.get("tags")
    if not isinstance(wanted, list) or not all(_is_tag_change(t) for t in wanted):
        raise errors.schema_invalid([{"field": "tags", "message": "Schema describes array"}])
    tags = dict(member.tags or {})
    for change in wanted:
        tag = audience.tag_named(change["name"])
        if change["status"] == "active":
            tags.setdefault(tag.id, now)
        else:
            tags.pop(tag.id, None)
    if tags != (member.tags or {}):
        _apply(audience, member, {"tags": tags or None}, now, "api")


def _is_tag_change(change: Any) -> bool:
    return (
        isinstance(change, dict)
        and isinstance(change.get("name"), str)
        and change.get("status") in ("active", "inactive")
    )


CONTACT_ACTIONS = ("subscribe", "unsubscribe", "clean", "upemail", "profile", "confirm")


def act_as_contact(
    audience: Audience,
    slot: str,
    action: str,
    source: str,
    now: float,
    details: dict[str, Any],
) -> list[MemberEvent]:
    """What a subscriber (source `user`) or an admin in the UI (`admin`) does.

    Unlike API writes these bypass the compliance rule (a contact may re-subscribe)."""
    if action == "subscribe" and resolve(audience, slot) is None:
        # a contact signing up again is the one way back for a forgotten address
        audience.tombstones.discard(subscriber_hash(slot))
        result = _create(audience, slot, SUBSCRIBED, details, now, False, source)
        return result.events
    member = require(audience, slot)
    if action == "upemail":
        return _change_email(audience, member, str(details["new_email"]), source, now)
    planned = _contact_changes(audience, member, action, source, now, details)
    return _apply(audience, member, planned, now, source)


def _contact_changes(
    audience: Audience,
    member: Member,
    action: str,
    source: str,
    now: float,
    details: dict[str, Any],
) -> dict[str, Any]:
    by = BY_CONTACT if source == "user" else BY_ADMIN
    if action in ("subscribe", "confirm"):
        if action == "confirm" and member.status != PENDING:
            raise errors.invalid_resource("Only pending members can confirm.")
        return _status_changes(member, SUBSCRIBED, by, now)
    if action == "unsubscribe":
        return _status_changes(member, UNSUBSCRIBED, by, now)
    if action == "clean":
        return _status_changes(member, CLEANED, by, now)
    if action == "profile":
        merges = rules.merge_values(
            audience.merge_fields, member.merges, details.get("merge_fields"), False
        )
        return {"merges": merges} if merges != member.merges else {}
    raise errors.invalid_resource(f"Unknown action {action!r}; use one of {CONTACT_ACTIONS}.")


def _change_email(
    audience: Audience, member: Member, new_email: str, source: str, now: float
) -> list[MemberEvent]:
    old_email, old_id = member.email, member.id
    _rename(audience, member, new_email)
    audience.change(member, now, lambda m: None)
    extra = (("old_email", old_email), ("new_email", new_email), ("old_id", old_id))
    return [MemberEvent("upemail", source, audience, member, extra)]
