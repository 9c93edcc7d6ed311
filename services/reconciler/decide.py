"""The decision table of ``readyToReconcileQueue``: what to do about one cache row.

``decide(rules, facts)`` is pure: it returns a ``RowDecision`` (CRM group changes to apply,
Mailchimp update data to queue, a tag update, older updates folded in and to cancel, the
row's new ``sync_status``) and performs nothing. A chunk is decided with
``[decide(rules, facts) for facts in chunk]``.

The subscription group is decided by the reference table (see ``decide_subscription``, one
``case`` per table row). "Mailchimp is more recent" when the CRM has no history for the
group or Mailchimp's change time is later than the CRM's newest history date; a
trustOverride, when set, wins both ways. A row not at Mailchimp is always "CRM more recent":
nobody leaves a CRM group because Mailchimp has never heard of them.

Pure: standard library, ``common.vocabulary`` and ``common.member_data`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common import member_data
from common.member_data import to_utc
from common.vocabulary import (
    PLUGIN_DATA_SENT,
    SUBSCRIBING,
    GroupStatus,
    MailchimpStatus,
    SyncStatus,
    TrustOverride,
)

MC = MailchimpStatus
SUBSCRIBED = MC.SUBSCRIBED
PENDING = MC.PENDING
UNSUBSCRIBED = MC.UNSUBSCRIBED

OTHER_EMAIL_SUBSCRIBED = (
    "unsubscribed at Mailchimp, but another email of this contact is subscribed in this "
    "audience: cannot remove the contact from the group"
)
NO_USABLE_EMAIL = "in the group in the CRM, but the contact has no usable email to subscribe"
EMAIL_ON_HOLD = "in the group in the CRM, but the email is on hold: cannot resubscribe it"
CLEANED_ADDRESS = "in the group in the CRM, but cleaned at Mailchimp: cannot be resubscribed"


# By value, as the cache stores it: a dict lookup, where MailchimpStatus(value) costs ten.
_MAILCHIMP_STATUS = {status.value: status for status in MailchimpStatus}


# --- The connection's rules -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InterestRule:
    """One mapped interest: the CRM group it stands for and its one-shot override."""

    crm_group_id: int
    trust_override: TrustOverride = TrustOverride.NONE


@dataclass(frozen=True, slots=True)
class ConnectionRules:
    """One sync connection: audience <-> subscription group, plus interest mappings.

    ``interests`` maps a Mailchimp interest id to its ``InterestRule``.
    """

    subscription_group_id: int
    trust_override: TrustOverride = TrustOverride.NONE
    interests: Mapping[str, InterestRule] = field(default_factory=dict)


# --- The row's facts --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailchimpFacts:
    """The Mailchimp side of a cache row.

    ``status`` None: not at Mailchimp (no member). ``status_at``: when the status was set
    (``status@`` of ``mailchimp_data``, else ``mailchimp_updated``). ``interests``: the flags
    Mailchimp reports; ``interests_at``: their ``interest-<id>@`` times (an interest with no
    time of its own falls back to ``status_at``). Naive datetimes are taken as UTC.
    """

    status: MailchimpStatus | None = None
    status_at: datetime | None = None
    email: str | None = None
    interests: Mapping[str, bool] = field(default_factory=dict)
    interests_at: Mapping[str, datetime] = field(default_factory=dict)

    @classmethod
    def from_cache(
        cls,
        status: str | None,
        updated: datetime | None,
        email: str | None,
        data: Mapping[str, Any] | None,
    ) -> MailchimpFacts:
        """From the cache columns ``mailchimp_status``, ``_updated``, ``_email``, ``_data``."""
        data = data or {}
        flags, times = member_data.interests_and_times(data)
        return cls(
            status=_MAILCHIMP_STATUS[status] if status else None,
            status_at=member_data.status_changed_at(data) or updated,
            email=email or None,
            interests=flags,
            interests_at=times,
        )


@dataclass(frozen=True, slots=True)
class CrmFacts:
    """The CRM side of a cache row, for the connection's groups.

    ``memberships``: current ``civicrm_group_contact`` status per group (absent: not a
    member). ``history_at``: newest subscription-history date per group (absent: none).
    ``best_email``: not on hold, non-empty, bulk-mail first then primary (None: no usable
    email). ``email_on_hold``: the CRM email matching the Mailchimp email is on hold.
    """

    memberships: Mapping[int, GroupStatus] = field(default_factory=dict)
    history_at: Mapping[int, datetime] = field(default_factory=dict)
    best_email: str | None = None
    email_on_hold: bool = False

    def is_added(self, group_id: int) -> bool:
        return self.memberships.get(group_id) == GroupStatus.ADDED


@dataclass(frozen=True, slots=True)
class OpenUpdate:
    """An older update of this row not yet submitted to Mailchimp (``batch_id`` null)."""

    update_id: int
    data: Mapping[str, Any]

    @property
    def is_tag_update(self) -> bool:
        return "tags" in self.data


@dataclass(frozen=True, slots=True)
class TagChange:
    """One tag to set on the member: ``status`` is Mailchimp's ``active`` or ``inactive``."""

    name: str
    status: str


@dataclass(frozen=True, slots=True)
class PluginData:
    """One-way CRM -> Mailchimp data from plugins (``civicrm_data``)."""

    mailchimp_updates: Mapping[str, Any] = field(default_factory=dict)
    tag_updates: Sequence[TagChange] = ()
    sent: PluginData | None = None

    @classmethod
    def from_civicrm_data(cls, data: Mapping[str, Any] | None) -> PluginData:
        """From ``civicrm_data``: ``mailchimp_updates`` (dict), ``tag_updates`` (name/status),
        and under ``PLUGIN_DATA_SENT`` the same two as last queued for Mailchimp."""
        data = data or {}
        sent = data.get(PLUGIN_DATA_SENT)
        return cls(
            mailchimp_updates=dict(data.get("mailchimp_updates") or {}),
            tag_updates=_tags(data.get("tag_updates")),
            sent=cls.from_civicrm_data(sent) if isinstance(sent, Mapping) else None,
        )

    def to_sent(self) -> dict[str, Any]:
        """What to store under ``PLUGIN_DATA_SENT`` once this data is queued."""
        tags = [{"name": t.name, "status": t.status} for t in self.tag_updates]
        return {"mailchimp_updates": dict(self.mailchimp_updates), "tag_updates": tags}

    def unsent(self, new_member: bool) -> PluginData:
        """The data to queue: all of it for a member Mailchimp does not have yet, else each
        part unless exactly that part was queued last time."""
        if new_member or self.sent is None:
            return self
        same_updates = self.sent.mailchimp_updates == self.mailchimp_updates
        same_tags = tuple(self.sent.tag_updates) == tuple(self.tag_updates)
        return PluginData(
            mailchimp_updates={} if same_updates else self.mailchimp_updates,
            tag_updates=() if same_tags else self.tag_updates,
        )

    @property
    def empty(self) -> bool:
        return not self.mailchimp_updates and not self.tag_updates


def _tags(raw: object) -> tuple[TagChange, ...]:
    items = raw if isinstance(raw, list | tuple) else ()
    return tuple(
        TagChange(str(t["name"]), str(t["status"])) for t in items if isinstance(t, Mapping)
    )


@dataclass(frozen=True, slots=True)
class RowFacts:
    """Everything ``decide`` needs about one cache row, loaded in bulk for a chunk.

    ``other_row_subscribed``: another row of the same contact in this audience is
    subscribed at Mailchimp. ``open_updates``: the row's older unsubmitted updates.
    """

    cache_id: int
    mailchimp: MailchimpFacts = MailchimpFacts()
    crm: CrmFacts = CrmFacts()
    other_row_subscribed: bool = False
    open_updates: Sequence[OpenUpdate] = ()
    plugin: PluginData = PluginData()


# --- Outcomes ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InSync:
    """Nothing to change on either side."""


@dataclass(frozen=True, slots=True)
class AddToGroup:
    """Add the contact to a CRM group (membership ``Added`` plus an ``MCsync`` history row)."""

    group_id: int

    @property
    def status(self) -> GroupStatus:
        return GroupStatus.ADDED


@dataclass(frozen=True, slots=True)
class RemoveFromGroup:
    """Remove the contact from a CRM group (``Removed`` plus an ``MCsync`` history row)."""

    group_id: int

    @property
    def status(self) -> GroupStatus:
        return GroupStatus.REMOVED


@dataclass(frozen=True, slots=True)
class QueueUpdate:
    """Send this data to Mailchimp for the member."""

    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Fail:
    """The row cannot sync; ``reason`` says why, for the troubleshooter."""

    reason: str


GroupChange = AddToGroup | RemoveFromGroup
SubscriptionOutcome = InSync | AddToGroup | RemoveFromGroup | QueueUpdate | Fail


@dataclass(frozen=True, slots=True)
class RowDecision:
    """What to do about one row.

    ``subscription``: the table's outcome for the subscription group (for stats/logs).
    ``group_changes``: CRM changes to apply, at most one per group. ``update``: Mailchimp
    member data to queue (None: nothing). ``tag_update``: a separate ``{"tags": [...]}``
    update (None: nothing). ``cancel_update_ids``: older unsubmitted updates folded into
    ``update``, to cancel. ``sync_status``: ``live`` when anything is queued, ``fail``
    (``fail_reason`` set) when the row cannot sync, else ``ok``.
    """

    cache_id: int
    subscription: SubscriptionOutcome
    sync_status: SyncStatus
    group_changes: tuple[GroupChange, ...] = ()
    update: Mapping[str, Any] | None = None
    tag_update: Mapping[str, Any] | None = None
    cancel_update_ids: tuple[int, ...] = ()
    fail_reason: str | None = None
    plugin_sent: Mapping[str, Any] | None = None


# --- Deciding ---------------------------------------------------------------------------


def decide(rules: ConnectionRules, facts: RowFacts) -> RowDecision:
    """Decide one cache row: the subscription table, then interests and plugin data."""
    outcome = decide_subscription(rules, facts)
    if isinstance(outcome, Fail):
        return RowDecision(facts.cache_id, outcome, SyncStatus.FAIL, fail_reason=outcome.reason)
    changes: list[GroupChange] = []
    ours: dict[str, Any] = {}
    if isinstance(outcome, AddToGroup | RemoveFromGroup):
        changes.append(outcome)
    if isinstance(outcome, QueueUpdate):
        ours.update(outcome.data)
    subscribed_after = status_after(facts, outcome) in SUBSCRIBING
    if subscribed_after:
        interest_changes, flags = decide_interests(rules, facts)
        changes.extend(interest_changes)
        if flags:
            ours["interests"] = flags
    plugin = facts.plugin.unsent(new_member=facts.mailchimp.status is None)
    if not subscribed_after:
        plugin = PluginData()
    update, folded = _compose_update(facts, ours, plugin)
    tag_update = _tag_update(plugin)
    queued = update is not None or tag_update is not None
    return RowDecision(
        cache_id=facts.cache_id,
        subscription=outcome,
        sync_status=SyncStatus.LIVE if queued else SyncStatus.OK,
        group_changes=tuple(changes),
        update=update,
        tag_update=tag_update,
        cancel_update_ids=folded,
        plugin_sent=None if plugin.empty else facts.plugin.to_sent(),
    )


def decide_subscription(rules: ConnectionRules, facts: RowFacts) -> SubscriptionOutcome:
    """The reference table for the subscription group: one ``case`` per table row."""
    group = rules.subscription_group_id
    mc = facts.mailchimp.status
    newer = mailchimp_more_recent(
        rules.trust_override,
        facts.mailchimp.status_at,
        facts.crm.history_at.get(group),
        at_mailchimp=mc is not None,
    )
    on_hold = facts.crm.email_on_hold
    # | Mailchimp more recent? | CRM Added? | Mailchimp status | -> outcome
    match (newer, facts.crm.is_added(group), mc):
        case (True, True, MC.SUBSCRIBED | MC.PENDING):
            return InSync()
        case (True, True, _):
            if facts.other_row_subscribed:
                return Fail(OTHER_EMAIL_SUBSCRIBED)
            return RemoveFromGroup(group)
        case (True, False, MC.SUBSCRIBED | MC.PENDING):
            return AddToGroup(group)
        case (True, False, _):
            return InSync()
        case (False, True, MC.SUBSCRIBED | MC.PENDING):
            return InSync()
        case (False, True, None):
            return _subscribe_new_member(facts.crm)
        case (False, True, MC.UNSUBSCRIBED | MC.ARCHIVED | MC.TRANSACTIONAL):
            return Fail(EMAIL_ON_HOLD) if on_hold else QueueUpdate({"status": SUBSCRIBED.value})
        case (False, True, MC.CLEANED):
            return Fail(CLEANED_ADDRESS)
        case (False, False, MC.SUBSCRIBED | MC.PENDING):
            return QueueUpdate({"status": UNSUBSCRIBED.value})
        case (False, False, _):
            return InSync()
    raise AssertionError("unreachable: the table covers every combination")


def mailchimp_more_recent(
    override: TrustOverride,
    mailchimp_at: datetime | None,
    crm_at: datetime | None,
    *,
    at_mailchimp: bool = True,
) -> bool:
    """Whether Mailchimp's side wins for a group: a row not at Mailchimp never does; then
    the override; then no CRM history, or Mailchimp's time strictly later than the CRM's."""
    if not at_mailchimp:
        return False
    if override == TrustOverride.MAILCHIMP:
        return True
    if override == TrustOverride.CIVICRM:
        return False
    if crm_at is None:
        return True
    return mailchimp_at is not None and to_utc(mailchimp_at) > to_utc(crm_at)


def status_after(facts: RowFacts, outcome: SubscriptionOutcome) -> MailchimpStatus | None:
    """The member's Mailchimp status once this outcome is carried out."""
    if isinstance(outcome, QueueUpdate):
        return MailchimpStatus(outcome.data["status"])
    if isinstance(outcome, Fail):
        return None
    return facts.mailchimp.status


def decide_interests(
    rules: ConnectionRules, facts: RowFacts
) -> tuple[list[GroupChange], dict[str, bool]]:
    """For a row that ends subscribed: CRM changes and Mailchimp flags for mapped interests.

    Only interests Mailchimp reports are decided; for a member not yet at Mailchimp every
    flag counts as false and the CRM is more recent, so its ``Added`` interests are sent.
    A CRM group is changed at most once, and never the subscription group.
    """
    changes: list[GroupChange] = []
    flags: dict[str, bool] = {}
    touched = {rules.subscription_group_id}
    for interest_id, rule in rules.interests.items():
        mc_flag = _mailchimp_flag(facts.mailchimp, interest_id)
        crm_flag = facts.crm.is_added(rule.crm_group_id)
        if mc_flag is None or mc_flag == crm_flag:
            continue
        at = facts.mailchimp.interests_at.get(interest_id, facts.mailchimp.status_at)
        crm_at = facts.crm.history_at.get(rule.crm_group_id)
        at_mailchimp = facts.mailchimp.status is not None
        if not mailchimp_more_recent(rule.trust_override, at, crm_at, at_mailchimp=at_mailchimp):
            flags[interest_id] = crm_flag
        elif rule.crm_group_id not in touched:
            touched.add(rule.crm_group_id)
            group = rule.crm_group_id
            changes.append(AddToGroup(group) if mc_flag else RemoveFromGroup(group))
    return changes, flags


def _mailchimp_flag(mailchimp: MailchimpFacts, interest_id: str) -> bool | None:
    if mailchimp.status is None:
        return False
    return mailchimp.interests.get(interest_id)


def _subscribe_new_member(crm: CrmFacts) -> SubscriptionOutcome:
    if crm.best_email is None:
        return Fail(NO_USABLE_EMAIL)
    return QueueUpdate({"email_address": crm.best_email, "status": SUBSCRIBED.value})


# --- Composing the Mailchimp updates ----------------------------------------------------


def _compose_update(
    facts: RowFacts, ours: Mapping[str, Any], plugin_data: PluginData
) -> tuple[dict[str, Any] | None, tuple[int, ...]]:
    """Older unsubmitted updates, then plugin data, then ours (ours wins).

    Older updates' statuses are superseded by this decision, except that a subscribe keeps
    ``pending`` when an older update asked for it (the compliance retry). Plugin data (only
    for rows ending subscribed/pending, and only what was not queued before) never sets
    ``status``.
    """
    plugin = _without_status(plugin_data.mailchimp_updates)
    if not ours and not plugin:
        return None, ()
    older = sorted(
        (u for u in facts.open_updates if not u.is_tag_update), key=lambda u: u.update_id
    )
    data: dict[str, Any] = {}
    for update in older:
        _layer(data, _without_status(update.data))
    _layer(data, plugin)
    _layer(data, ours)
    if ours.get("status") == SUBSCRIBED and any(u.data.get("status") == PENDING for u in older):
        data["status"] = PENDING.value
    return data, tuple(u.update_id for u in older)


def _tag_update(plugin: PluginData) -> dict[str, Any] | None:
    if not plugin.tag_updates:
        return None
    return {"tags": [{"name": t.name, "status": t.status} for t in plugin.tag_updates]}


def _layer(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    # One level deep, so plugin merge_fields and our interests combine instead of replacing.
    for key, value in top.items():
        below = base.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            base[key] = {**below, **value}
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value


def _without_status(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if key != "status"}
