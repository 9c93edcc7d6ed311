"""The reconcile decision table: one case per row of the reference table, then the rest."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.vocabulary import (
    PLUGIN_DATA_SENT,
    GroupStatus,
    MailchimpStatus,
    SyncStatus,
    TrustOverride,
)
from services.reconciler.decide import (
    CLEANED_ADDRESS,
    EMAIL_ON_HOLD,
    NO_USABLE_EMAIL,
    OTHER_EMAIL_SUBSCRIBED,
    AddToGroup,
    ConnectionRules,
    CrmFacts,
    Fail,
    InSync,
    InterestRule,
    MailchimpFacts,
    OpenUpdate,
    PluginData,
    QueueUpdate,
    RemoveFromGroup,
    RowDecision,
    RowFacts,
    SubscriptionOutcome,
    TagChange,
    decide,
)

MC = MailchimpStatus
GROUP = 10
INTEREST_GROUP = 20
INTEREST = "abc123"
EMAIL = "ann@example.org"
CRM_TIME = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EARLIER = CRM_TIME - timedelta(days=1)
LATER = CRM_TIME + timedelta(days=1)
RULES = ConnectionRules(subscription_group_id=GROUP)
INTEREST_RULES = ConnectionRules(
    subscription_group_id=GROUP, interests={INTEREST: InterestRule(INTEREST_GROUP)}
)
ADDED = GroupStatus.ADDED
REMOVED = GroupStatus.REMOVED


def row(
    mailchimp: MailchimpStatus | None,
    crm: GroupStatus | None,
    *,
    mailchimp_at: datetime | None = LATER,
    crm_at: datetime | None = CRM_TIME,
    best_email: str | None = EMAIL,
    on_hold: bool = False,
    other_row_subscribed: bool = False,
    open_updates: tuple[OpenUpdate, ...] = (),
    plugin: PluginData | None = None,
    interest: bool | None = None,
    interest_at: datetime | None = None,
    crm_interest: GroupStatus | None = None,
    crm_interest_at: datetime | None = None,
) -> RowFacts:
    """One cache row; the interest arguments are about ``INTEREST``/``INTEREST_GROUP``."""
    memberships = {GROUP: crm, INTEREST_GROUP: crm_interest}
    history = {GROUP: crm_at, INTEREST_GROUP: crm_interest_at}
    return RowFacts(
        cache_id=1,
        mailchimp=MailchimpFacts(
            status=mailchimp,
            status_at=mailchimp_at if mailchimp else None,
            email=EMAIL if mailchimp else None,
            interests={} if interest is None else {INTEREST: interest},
            interests_at={} if interest_at is None else {INTEREST: interest_at},
        ),
        crm=CrmFacts(
            memberships={g: s for g, s in memberships.items() if s is not None},
            history_at={g: t for g, t in history.items() if t is not None},
            best_email=best_email,
            email_on_hold=on_hold,
        ),
        other_row_subscribed=other_row_subscribed,
        open_updates=open_updates,
        plugin=plugin or PluginData(),
    )


def mailchimp_newer(mailchimp: MailchimpStatus | None, crm: GroupStatus | None) -> RowFacts:
    return row(mailchimp, crm, mailchimp_at=LATER)


def crm_newer(mailchimp: MailchimpStatus | None, crm: GroupStatus | None) -> RowFacts:
    return row(mailchimp, crm, mailchimp_at=EARLIER)


def in_sync() -> RowDecision:
    return RowDecision(1, InSync(), SyncStatus.OK)


def changes_group(change: AddToGroup | RemoveFromGroup) -> RowDecision:
    return RowDecision(1, change, SyncStatus.OK, group_changes=(change,))


def queues(data: dict[str, Any]) -> RowDecision:
    return RowDecision(1, QueueUpdate(data), SyncStatus.LIVE, update=data)


def fails(reason: str) -> RowDecision:
    return RowDecision(1, Fail(reason), SyncStatus.FAIL, fail_reason=reason)


class Case(NamedTuple):
    facts: RowFacts
    expected: RowDecision


TABLE = {
    # | yes | Added | subscribed/pending | in sync |
    "mailchimp_newer_added_subscribed_is_in_sync": Case(
        mailchimp_newer(MC.SUBSCRIBED, ADDED), in_sync()
    ),
    "mailchimp_newer_added_pending_is_in_sync": Case(mailchimp_newer(MC.PENDING, ADDED), in_sync()),
    # | yes | Added | anything else | remove from CRM group, unless another row subscribed |
    "mailchimp_newer_added_unsubscribed_removes_from_group": Case(
        mailchimp_newer(MC.UNSUBSCRIBED, ADDED), changes_group(RemoveFromGroup(GROUP))
    ),
    "mailchimp_newer_added_cleaned_removes_from_group": Case(
        mailchimp_newer(MC.CLEANED, ADDED), changes_group(RemoveFromGroup(GROUP))
    ),
    "mailchimp_newer_added_archived_removes_from_group": Case(
        mailchimp_newer(MC.ARCHIVED, ADDED), changes_group(RemoveFromGroup(GROUP))
    ),
    "mailchimp_newer_added_unsubscribed_other_row_subscribed_fails": Case(
        row(MC.UNSUBSCRIBED, ADDED, mailchimp_at=LATER, other_row_subscribed=True),
        fails(OTHER_EMAIL_SUBSCRIBED),
    ),
    # | yes | not Added | subscribed/pending | add to CRM group |
    "mailchimp_newer_not_added_subscribed_adds_to_group": Case(
        mailchimp_newer(MC.SUBSCRIBED, REMOVED), changes_group(AddToGroup(GROUP))
    ),
    "no_crm_history_never_member_pending_adds_to_group": Case(
        row(MC.PENDING, None, mailchimp_at=EARLIER, crm_at=None),
        changes_group(AddToGroup(GROUP)),
    ),
    # | yes | not Added | not subscribed | in sync |
    "mailchimp_newer_not_added_unsubscribed_is_in_sync": Case(
        mailchimp_newer(MC.UNSUBSCRIBED, REMOVED), in_sync()
    ),
    "mailchimp_newer_never_member_cleaned_is_in_sync": Case(
        mailchimp_newer(MC.CLEANED, None), in_sync()
    ),
    # | no | Added | subscribed/pending | in sync |
    "crm_newer_added_subscribed_is_in_sync": Case(crm_newer(MC.SUBSCRIBED, ADDED), in_sync()),
    "crm_newer_added_pending_is_in_sync": Case(crm_newer(MC.PENDING, ADDED), in_sync()),
    # | no | Added | not at Mailchimp | queue best email + subscribed; no email -> fail |
    "crm_newer_added_not_at_mailchimp_queues_subscribe_with_best_email": Case(
        crm_newer(None, ADDED), queues({"email_address": EMAIL, "status": "subscribed"})
    ),
    "crm_added_not_at_mailchimp_without_history_still_queues_subscribe": Case(
        row(None, ADDED, crm_at=None), queues({"email_address": EMAIL, "status": "subscribed"})
    ),
    "crm_newer_added_not_at_mailchimp_without_usable_email_fails": Case(
        row(None, ADDED, best_email=None), fails(NO_USABLE_EMAIL)
    ),
    # | no | Added | unsubscribed/archived/transactional | on hold -> fail; else subscribe |
    "crm_newer_added_unsubscribed_queues_subscribed": Case(
        crm_newer(MC.UNSUBSCRIBED, ADDED), queues({"status": "subscribed"})
    ),
    "crm_newer_added_archived_queues_subscribed": Case(
        crm_newer(MC.ARCHIVED, ADDED), queues({"status": "subscribed"})
    ),
    "crm_newer_added_transactional_queues_subscribed": Case(
        crm_newer(MC.TRANSACTIONAL, ADDED), queues({"status": "subscribed"})
    ),
    "crm_newer_added_unsubscribed_email_on_hold_fails": Case(
        row(MC.UNSUBSCRIBED, ADDED, mailchimp_at=EARLIER, on_hold=True), fails(EMAIL_ON_HOLD)
    ),
    # | no | Added | cleaned | fail |
    "crm_newer_added_cleaned_fails": Case(crm_newer(MC.CLEANED, ADDED), fails(CLEANED_ADDRESS)),
    # | no | not Added | subscribed/pending | queue unsubscribed |
    "crm_newer_removed_subscribed_queues_unsubscribed": Case(
        crm_newer(MC.SUBSCRIBED, REMOVED), queues({"status": "unsubscribed"})
    ),
    "crm_newer_pending_in_crm_pending_at_mailchimp_queues_unsubscribed": Case(
        crm_newer(MC.PENDING, GroupStatus.PENDING), queues({"status": "unsubscribed"})
    ),
    # | no | not Added | not subscribed | in sync |
    "crm_newer_removed_unsubscribed_is_in_sync": Case(
        crm_newer(MC.UNSUBSCRIBED, REMOVED), in_sync()
    ),
    "not_at_mailchimp_not_in_crm_group_is_in_sync": Case(crm_newer(None, REMOVED), in_sync()),
    "same_time_counts_as_crm_newer_removed_cleaned_is_in_sync": Case(
        row(MC.CLEANED, REMOVED, mailchimp_at=CRM_TIME), in_sync()
    ),
}


@pytest.mark.parametrize("case", TABLE.values(), ids=TABLE.keys())
def test_subscription_table(case: Case) -> None:
    assert decide(RULES, case.facts) == case.expected


# --- Overrides --------------------------------------------------------------------------


def with_override(override: TrustOverride, **interests: InterestRule) -> ConnectionRules:
    return ConnectionRules(GROUP, override, interests)


def test_civicrm_override_with_mailchimp_newer_added_unsubscribed_queues_subscribed() -> None:
    facts = row(MC.UNSUBSCRIBED, ADDED, mailchimp_at=LATER)
    assert decide(with_override(TrustOverride.CIVICRM), facts) == queues({"status": "subscribed"})


def test_civicrm_override_with_no_crm_history_subscribed_queues_unsubscribed() -> None:
    facts = row(MC.SUBSCRIBED, None, crm_at=None)
    expected = queues({"status": "unsubscribed"})
    assert decide(with_override(TrustOverride.CIVICRM), facts) == expected


def test_civicrm_override_never_resubscribes_cleaned() -> None:
    facts = row(MC.CLEANED, ADDED, mailchimp_at=LATER)
    assert decide(with_override(TrustOverride.CIVICRM), facts) == fails(CLEANED_ADDRESS)


def test_mailchimp_override_with_crm_newer_removed_subscribed_adds_to_group() -> None:
    facts = row(MC.SUBSCRIBED, REMOVED, mailchimp_at=EARLIER)
    expected = changes_group(AddToGroup(GROUP))
    assert decide(with_override(TrustOverride.MAILCHIMP), facts) == expected


def test_mailchimp_override_with_crm_newer_added_unsubscribed_removes_from_group() -> None:
    facts = row(MC.UNSUBSCRIBED, ADDED, mailchimp_at=EARLIER)
    expected = changes_group(RemoveFromGroup(GROUP))
    assert decide(with_override(TrustOverride.MAILCHIMP), facts) == expected


def test_mailchimp_override_never_removes_someone_mailchimp_has_never_heard_of() -> None:
    facts = row(None, ADDED)
    expected = queues({"email_address": EMAIL, "status": "subscribed"})
    assert decide(with_override(TrustOverride.MAILCHIMP), facts) == expected


def test_missing_mailchimp_time_with_crm_history_counts_as_crm_newer() -> None:
    facts = row(MC.SUBSCRIBED, REMOVED, mailchimp_at=None)
    assert decide(RULES, facts) == queues({"status": "unsubscribed"})


def test_naive_times_are_taken_as_utc() -> None:
    facts = row(MC.SUBSCRIBED, REMOVED, mailchimp_at=LATER.replace(tzinfo=None))
    assert decide(RULES, facts) == changes_group(AddToGroup(GROUP))


# --- Interests --------------------------------------------------------------------------


def interest_row(**kwargs: Any) -> RowFacts:
    """Subscribed on both sides (in sync), with the interest as given."""
    return row(MC.SUBSCRIBED, ADDED, mailchimp_at=EARLIER, **kwargs)


INTERESTS = {
    "mailchimp_newer_interest_on_adds_crm_interest_group": Case(
        interest_row(
            interest=True, interest_at=LATER, crm_interest=REMOVED, crm_interest_at=CRM_TIME
        ),
        RowDecision(1, InSync(), SyncStatus.OK, group_changes=(AddToGroup(INTEREST_GROUP),)),
    ),
    "mailchimp_newer_interest_off_removes_crm_interest_group": Case(
        interest_row(
            interest=False, interest_at=LATER, crm_interest=ADDED, crm_interest_at=CRM_TIME
        ),
        RowDecision(1, InSync(), SyncStatus.OK, group_changes=(RemoveFromGroup(INTEREST_GROUP),)),
    ),
    "no_crm_history_for_interest_group_mailchimp_wins": Case(
        interest_row(interest=True, interest_at=EARLIER, crm_interest=None, crm_interest_at=None),
        RowDecision(1, InSync(), SyncStatus.OK, group_changes=(AddToGroup(INTEREST_GROUP),)),
    ),
    "crm_newer_interest_group_added_queues_interest_on": Case(
        interest_row(
            interest=False, interest_at=EARLIER, crm_interest=ADDED, crm_interest_at=CRM_TIME
        ),
        RowDecision(1, InSync(), SyncStatus.LIVE, update={"interests": {INTEREST: True}}),
    ),
    "crm_newer_interest_group_removed_queues_interest_off": Case(
        interest_row(
            interest=True, interest_at=EARLIER, crm_interest=REMOVED, crm_interest_at=CRM_TIME
        ),
        RowDecision(1, InSync(), SyncStatus.LIVE, update={"interests": {INTEREST: False}}),
    ),
    "interest_without_own_time_falls_back_to_status_time": Case(
        interest_row(interest=True, crm_interest=REMOVED, crm_interest_at=CRM_TIME),
        RowDecision(1, InSync(), SyncStatus.LIVE, update={"interests": {INTEREST: False}}),
    ),
    "interests_agreeing_change_nothing": Case(
        interest_row(
            interest=True, interest_at=LATER, crm_interest=ADDED, crm_interest_at=CRM_TIME
        ),
        in_sync(),
    ),
    "interest_absent_from_mailchimp_data_is_not_decided": Case(
        interest_row(interest=None, crm_interest=ADDED, crm_interest_at=CRM_TIME), in_sync()
    ),
    "interest_not_decided_when_row_ends_unsubscribed": Case(
        row(MC.UNSUBSCRIBED, REMOVED, interest=True, crm_interest=None, crm_interest_at=None),
        in_sync(),
    ),
    "interest_not_decided_when_removed_from_group": Case(
        row(MC.UNSUBSCRIBED, ADDED, interest=True, crm_interest=REMOVED, crm_interest_at=None),
        changes_group(RemoveFromGroup(GROUP)),
    ),
    "interest_not_decided_when_unsubscribe_is_queued": Case(
        row(
            MC.SUBSCRIBED,
            REMOVED,
            mailchimp_at=EARLIER,
            interest=False,
            interest_at=EARLIER,
            crm_interest=ADDED,
            crm_interest_at=CRM_TIME,
        ),
        queues({"status": "unsubscribed"}),
    ),
    "interest_goes_in_the_same_update_as_resubscribe": Case(
        row(
            MC.UNSUBSCRIBED,
            ADDED,
            mailchimp_at=EARLIER,
            interest=False,
            interest_at=EARLIER,
            crm_interest=ADDED,
            crm_interest_at=CRM_TIME,
        ),
        RowDecision(
            1,
            QueueUpdate({"status": "subscribed"}),
            SyncStatus.LIVE,
            update={"status": "subscribed", "interests": {INTEREST: True}},
        ),
    ),
    "new_member_gets_its_crm_interests": Case(
        row(None, ADDED, crm_interest=ADDED, crm_interest_at=CRM_TIME),
        RowDecision(
            1,
            QueueUpdate({"email_address": EMAIL, "status": "subscribed"}),
            SyncStatus.LIVE,
            update={"email_address": EMAIL, "status": "subscribed", "interests": {INTEREST: True}},
        ),
    ),
    "added_to_subscription_group_and_interest_group_together": Case(
        row(MC.SUBSCRIBED, None, crm_at=None, interest=True, crm_interest_at=None),
        RowDecision(
            1,
            AddToGroup(GROUP),
            SyncStatus.OK,
            group_changes=(AddToGroup(GROUP), AddToGroup(INTEREST_GROUP)),
        ),
    ),
}


@pytest.mark.parametrize("case", INTERESTS.values(), ids=INTERESTS.keys())
def test_interests(case: Case) -> None:
    assert decide(INTEREST_RULES, case.facts) == case.expected


def test_interest_override_civicrm_wins_over_newer_mailchimp() -> None:
    rules = with_override(
        TrustOverride.NONE, **{INTEREST: InterestRule(INTEREST_GROUP, TrustOverride.CIVICRM)}
    )
    facts = interest_row(interest=True, interest_at=LATER, crm_interest_at=CRM_TIME)
    assert decide(rules, facts).update == {"interests": {INTEREST: False}}


def test_interest_override_mailchimp_wins_over_newer_crm() -> None:
    rules = with_override(
        TrustOverride.NONE, **{INTEREST: InterestRule(INTEREST_GROUP, TrustOverride.MAILCHIMP)}
    )
    facts = interest_row(
        interest=True, interest_at=EARLIER, crm_interest=REMOVED, crm_interest_at=CRM_TIME
    )
    assert decide(rules, facts).group_changes == (AddToGroup(INTEREST_GROUP),)


def test_subscription_override_does_not_decide_interests() -> None:
    rules = with_override(TrustOverride.CIVICRM, **{INTEREST: InterestRule(INTEREST_GROUP)})
    facts = interest_row(interest=True, interest_at=LATER, crm_interest_at=CRM_TIME)
    assert decide(rules, facts).group_changes == (AddToGroup(INTEREST_GROUP),)


def test_interest_mapped_to_the_subscription_group_never_changes_it() -> None:
    rules = with_override(TrustOverride.NONE, **{INTEREST: InterestRule(GROUP)})
    facts = row(MC.SUBSCRIBED, None, crm_at=None, interest=False)
    decision = decide(rules, facts)
    assert decision.group_changes == (AddToGroup(GROUP),)


# --- Older unsubmitted updates, plugin data, tags ---------------------------------------


def test_resubscribe_keeps_pending_asked_by_an_older_update_and_cancels_it() -> None:
    older = (OpenUpdate(7, {"status": "pending", "merge_fields": {"FNAME": "Ann"}}),)
    facts = row(MC.UNSUBSCRIBED, ADDED, mailchimp_at=EARLIER, open_updates=older)
    decision = decide(RULES, facts)
    assert decision.update == {"status": "pending", "merge_fields": {"FNAME": "Ann"}}
    assert decision.cancel_update_ids == (7,)
    assert decision.sync_status == SyncStatus.LIVE


def test_older_updates_fold_in_oldest_first_and_their_status_is_superseded() -> None:
    older = (
        OpenUpdate(9, {"status": "unsubscribed", "merge_fields": {"FNAME": "Newer"}}),
        OpenUpdate(8, {"status": "subscribed", "merge_fields": {"FNAME": "Old", "LNAME": "X"}}),
    )
    facts = row(MC.SUBSCRIBED, REMOVED, mailchimp_at=EARLIER, open_updates=older)
    decision = decide(RULES, facts)
    assert decision.update == {
        "status": "unsubscribed",
        "merge_fields": {"FNAME": "Newer", "LNAME": "X"},
    }
    assert decision.cancel_update_ids == (8, 9)


def test_older_tag_updates_are_neither_folded_nor_cancelled() -> None:
    older = (OpenUpdate(5, {"tags": [{"name": "a", "status": "active"}]}),)
    facts = row(MC.UNSUBSCRIBED, ADDED, mailchimp_at=EARLIER, open_updates=older)
    decision = decide(RULES, facts)
    assert decision.update == {"status": "subscribed"}
    assert decision.cancel_update_ids == ()


def test_nothing_queued_leaves_older_updates_alone() -> None:
    older = (OpenUpdate(5, {"merge_fields": {"FNAME": "Ann"}}),)
    facts = row(MC.SUBSCRIBED, ADDED, open_updates=older)
    assert decide(RULES, facts) == in_sync()


def test_plugin_data_is_queued_for_a_subscribed_row_without_its_status() -> None:
    plugin = PluginData({"status": "unsubscribed", "merge_fields": {"FNAME": "Ann"}})
    facts = row(MC.SUBSCRIBED, ADDED, plugin=plugin)
    assert decide(RULES, facts) == RowDecision(
        1,
        InSync(),
        SyncStatus.LIVE,
        update={"merge_fields": {"FNAME": "Ann"}},
        plugin_sent={
            "mailchimp_updates": {"status": "unsubscribed", "merge_fields": {"FNAME": "Ann"}},
            "tag_updates": [],
        },
    )


ANN = {"merge_fields": {"FNAME": "Ann"}}
DONOR = (TagChange("donor", "active"),)


def sent_before(updates: dict[str, Any], tags: tuple[TagChange, ...]) -> PluginData:
    """Plugin data whose every part was queued for Mailchimp by an earlier decision."""
    return PluginData(updates, tags, sent=PluginData(updates, tags))


def test_plugin_data_queued_before_is_not_queued_again() -> None:
    facts = row(MC.SUBSCRIBED, ADDED, plugin=sent_before(ANN, DONOR))
    assert decide(RULES, facts) == in_sync()


def test_only_the_part_of_plugin_data_that_changed_is_queued_again() -> None:
    plugin = PluginData({"merge_fields": {"FNAME": "Anne"}}, DONOR, sent=PluginData(ANN, DONOR))
    decision = decide(RULES, row(MC.SUBSCRIBED, ADDED, plugin=plugin))
    assert decision.update == {"merge_fields": {"FNAME": "Anne"}}
    assert decision.tag_update is None
    assert decision.plugin_sent == {
        "mailchimp_updates": {"merge_fields": {"FNAME": "Anne"}},
        "tag_updates": [{"name": "donor", "status": "active"}],
    }


def test_a_member_mailchimp_does_not_have_gets_all_plugin_data_even_if_sent_before() -> None:
    decision = decide(RULES, row(None, ADDED, plugin=sent_before(ANN, DONOR)))
    assert decision.update == {"email_address": EMAIL, "status": "subscribed", **ANN}
    assert decision.tag_update == {"tags": [{"name": "donor", "status": "active"}]}


def test_plugin_data_sent_is_read_back_from_civicrm_data() -> None:
    stored = {
        "mailchimp_updates": ANN,
        "tag_updates": [{"name": "donor", "status": "active"}],
        PLUGIN_DATA_SENT: {"mailchimp_updates": ANN, "tag_updates": []},
    }
    plugin = PluginData.from_civicrm_data(stored)
    assert plugin.unsent(new_member=False) == PluginData({}, DONOR)


def test_plugin_data_goes_under_ours() -> None:
    plugin = PluginData(
        {
            "status": "pending",
            "email_address": "other@example.org",
            "interests": {INTEREST: False, "x": True},
        }
    )
    facts = row(None, ADDED, crm_interest=ADDED, plugin=plugin)
    assert decide(INTEREST_RULES, facts).update == {
        "email_address": EMAIL,
        "status": "subscribed",
        "interests": {INTEREST: True, "x": True},
    }


def test_plugin_data_is_not_sent_for_a_row_ending_unsubscribed() -> None:
    plugin = PluginData({"merge_fields": {"FNAME": "Ann"}}, (TagChange("donor", "active"),))
    facts = row(MC.SUBSCRIBED, REMOVED, mailchimp_at=EARLIER, plugin=plugin)
    assert decide(RULES, facts) == queues({"status": "unsubscribed"})


def test_tags_go_in_a_separate_update() -> None:
    plugin = PluginData(tag_updates=(TagChange("donor", "active"), TagChange("lapsed", "inactive")))
    facts = row(MC.UNSUBSCRIBED, ADDED, mailchimp_at=EARLIER, plugin=plugin)
    decision = decide(RULES, facts)
    assert decision.update == {"status": "subscribed"}
    assert decision.tag_update == {
        "tags": [{"name": "donor", "status": "active"}, {"name": "lapsed", "status": "inactive"}]
    }


def test_tags_alone_make_an_in_sync_row_live() -> None:
    plugin = PluginData(tag_updates=(TagChange("donor", "active"),))
    decision = decide(RULES, row(MC.PENDING, ADDED, plugin=plugin))
    assert (decision.update, decision.sync_status) == (None, SyncStatus.LIVE)
    assert decision.tag_update == {"tags": [{"name": "donor", "status": "active"}]}


def test_a_failed_row_queues_no_plugin_data_or_tags() -> None:
    plugin = PluginData({"merge_fields": {"FNAME": "Ann"}}, (TagChange("donor", "active"),))
    facts = row(MC.CLEANED, ADDED, mailchimp_at=EARLIER, plugin=plugin)
    assert decide(RULES, facts) == fails(CLEANED_ADDRESS)


# --- Reading the cache row --------------------------------------------------------------


def test_mailchimp_facts_from_cache_read_per_field_times() -> None:
    data = {
        "status": "subscribed",
        "status@": "2024-03-02T12:00:00+00:00",
        "first_name": "Ann",
        "first_name@": "2024-04-01T00:00:00Z",
        f"interest-{INTEREST}": True,
        f"interest-{INTEREST}@": "2024-03-05T00:00:00+00:00",
        "interest-other": False,
    }
    facts = MailchimpFacts.from_cache("subscribed", LATER + timedelta(days=30), EMAIL, data)
    assert facts == MailchimpFacts(
        status=MC.SUBSCRIBED,
        status_at=datetime(2024, 3, 2, 12, tzinfo=UTC),
        email=EMAIL,
        interests={INTEREST: True, "other": False},
        interests_at={INTEREST: datetime(2024, 3, 5, tzinfo=UTC)},
    )


def test_mailchimp_facts_fall_back_to_mailchimp_updated() -> None:
    facts = MailchimpFacts.from_cache("unsubscribed", LATER, EMAIL, {"status@": "garbage"})
    assert facts.status_at == LATER


def test_mailchimp_facts_of_a_crm_only_row() -> None:
    assert MailchimpFacts.from_cache(None, None, None, None) == MailchimpFacts()


def test_plugin_data_from_civicrm_data() -> None:
    data = {
        "mailchimp_updates": {"merge_fields": {"FNAME": "Ann"}},
        "tag_updates": [{"name": "donor", "status": "active"}],
        "other": 1,
    }
    assert PluginData.from_civicrm_data(data) == PluginData(
        {"merge_fields": {"FNAME": "Ann"}}, (TagChange("donor", "active"),)
    )
    assert PluginData.from_civicrm_data(None) == PluginData()


# --- Properties -------------------------------------------------------------------------

# The decision depends only on how times order, so a few instants (naive ones too) do.
instants = st.sampled_from([EARLIER, CRM_TIME, LATER, LATER.replace(tzinfo=None)])
times = st.none() | instants
statuses = st.none() | st.sampled_from(MailchimpStatus)
group_statuses = st.none() | st.sampled_from(GroupStatus)
overrides = st.sampled_from(TrustOverride)
interest_ids = st.sampled_from(["a", "b", "c"])
groups = st.sampled_from([GROUP, 20, 21])
update_data = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from([s.value for s in MailchimpStatus]),
        "merge_fields": st.dictionaries(
            st.sampled_from(["FNAME", "LNAME"]), st.sampled_from(["Ann", "Bob"])
        ),
        "interests": st.dictionaries(interest_ids, st.booleans()),
        "tags": st.just([{"name": "t", "status": "active"}]),
    },
)


@st.composite
def rules_and_facts(draw: st.DrawFn) -> tuple[ConnectionRules, RowFacts]:
    rules = ConnectionRules(
        GROUP,
        draw(overrides),
        draw(st.dictionaries(interest_ids, st.builds(InterestRule, groups, overrides))),
    )
    status = draw(statuses)
    mailchimp = MailchimpFacts(
        status=status,
        status_at=draw(times),
        email=EMAIL if status else None,
        interests=draw(st.dictionaries(interest_ids, st.booleans())),
        interests_at=draw(st.dictionaries(interest_ids, instants)),
    )
    crm = CrmFacts(
        memberships=draw(st.dictionaries(groups, st.sampled_from(GroupStatus))),
        history_at=draw(st.dictionaries(groups, instants)),
        best_email=draw(st.none() | st.just(EMAIL)),
        email_on_hold=draw(st.booleans()),
    )
    facts = RowFacts(
        cache_id=draw(st.integers(1, 10**9)),
        mailchimp=mailchimp,
        crm=crm,
        other_row_subscribed=draw(st.booleans()),
        open_updates=tuple(
            OpenUpdate(i, data) for i, data in enumerate(draw(st.lists(update_data, max_size=3)))
        ),
        plugin=PluginData(
            draw(update_data),
            tuple(
                draw(st.lists(st.builds(TagChange, st.just("t"), st.just("active")), max_size=2))
            ),
        ),
    )
    return rules, facts


@given(rules_and_facts())
def test_every_input_gets_exactly_one_consistent_decision(
    case: tuple[ConnectionRules, RowFacts],
) -> None:
    decision = decide(*case)
    queued = decision.update is not None or decision.tag_update is not None
    failed = isinstance(decision.subscription, Fail)
    assert [queued and not failed, failed, not queued and not failed].count(True) == 1
    expected_status = SyncStatus.FAIL if failed else SyncStatus.LIVE if queued else SyncStatus.OK
    assert decision.sync_status == expected_status
    assert (decision.fail_reason is not None) == failed
    if failed:
        assert (decision.group_changes, decision.cancel_update_ids) == ((), ())


def subscription_of(rules: ConnectionRules, facts: RowFacts) -> SubscriptionOutcome:
    return decide(rules, facts).subscription


@given(rules_and_facts())
def test_an_override_always_wins(case: tuple[ConnectionRules, RowFacts]) -> None:
    rules, facts = case
    override = dataclasses.replace(rules, trust_override=TrustOverride.NONE)
    history = dict(facts.crm.history_at)
    history.pop(GROUP, None)
    mailchimp_newer_facts = dataclasses.replace(
        facts, crm=dataclasses.replace(facts.crm, history_at=history)
    )
    crm_newer_facts = dataclasses.replace(
        facts,
        crm=dataclasses.replace(facts.crm, history_at={**history, GROUP: CRM_TIME}),
        mailchimp=dataclasses.replace(facts.mailchimp, status_at=EARLIER),
    )
    mailchimp_rules = dataclasses.replace(rules, trust_override=TrustOverride.MAILCHIMP)
    civicrm_rules = dataclasses.replace(rules, trust_override=TrustOverride.CIVICRM)
    assert subscription_of(civicrm_rules, facts) == subscription_of(override, crm_newer_facts)
    if facts.mailchimp.status is not None:
        expected = subscription_of(override, mailchimp_newer_facts)
        assert subscription_of(mailchimp_rules, facts) == expected


@given(rules_and_facts())
def test_cleaned_is_never_resubscribed(case: tuple[ConnectionRules, RowFacts]) -> None:
    rules, facts = case
    cleaned = dataclasses.replace(
        facts, mailchimp=dataclasses.replace(facts.mailchimp, status=MC.CLEANED)
    )
    update = decide(rules, cleaned).update
    assert update is None or update.get("status") not in ("subscribed", "pending")


@given(rules_and_facts())
def test_a_group_is_changed_at_most_once(case: tuple[ConnectionRules, RowFacts]) -> None:
    changes = decide(*case).group_changes
    assert len({change.group_id for change in changes}) == len(changes)


@given(rules_and_facts())
def test_status_is_never_taken_from_plugin_or_older_updates_alone(
    case: tuple[ConnectionRules, RowFacts],
) -> None:
    decision = decide(*case)
    if decision.update is not None and "status" in decision.update:
        assert isinstance(decision.subscription, QueueUpdate)


def test_group_changes_carry_the_membership_status_to_write() -> None:
    assert (AddToGroup(GROUP).status, RemoveFromGroup(GROUP).status) == (ADDED, REMOVED)
