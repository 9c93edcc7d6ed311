from collections import Counter

import pytest

from mcsync.demo_data import CASE_SHARES, MATCHED, plan_demo


def test_the_same_seed_plans_the_same_people() -> None:
    assert plan_demo(500, seed=7) == plan_demo(500, seed=7)
    assert plan_demo(500, seed=7) != plan_demo(500, seed=8)


def test_every_case_appears_in_its_share_of_the_default_audience() -> None:
    plan = plan_demo(10_000)

    for case, share in CASE_SHARES.items():
        assert plan.cases[case] == 10_000 * share // 1000
    assert sum(plan.cases.values()) == 10_000
    assert plan.cases[MATCHED] == 10_000 - sum(10_000 * s // 1000 for s in CASE_SHARES.values())


def test_each_address_is_one_member_at_mailchimp() -> None:
    plan = plan_demo(3_000)

    addresses = Counter(member.email for member in plan.members)
    assert max(addresses.values()) == 1


def test_shared_addresses_belong_to_two_contacts() -> None:
    plan = plan_demo(3_000)

    owners = Counter(email for c in plan.contacts for email, _ in c.emails)
    shared = [email for email, count in owners.items() if count > 1]
    assert len(shared) == plan.cases["one email on several contacts"]


def test_all_mailchimp_statuses_are_seeded() -> None:
    statuses = {member.status for member in plan_demo(2_000).members}

    assert statuses == {
        "subscribed",
        "unsubscribed",
        "cleaned",
        "pending",
        "transactional",
        "archived",
    }


def test_a_crm_newer_unsubscribe_is_dated_after_the_mailchimp_change() -> None:
    plan = plan_demo(2_000)
    members = {m.email: m for m in plan.members}

    crm_newer = [
        c
        for c in plan.contacts
        if c.subscription
        and c.subscription.status == "Added"
        and members.get(c.emails[0][0]) is not None
        and members[c.emails[0][0]].unsubscribed_by == "admin"
    ]
    assert crm_newer
    for contact in crm_newer:
        assert contact.subscription is not None
        assert contact.subscription.date > members[contact.emails[0][0]].last_changed


def test_an_empty_demo_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        plan_demo(0)


def test_each_person_carries_the_case_it_was_planned_for() -> None:
    plan = plan_demo(2_000)

    planned = {c.case for c in plan.contacts} | {m.case for m in plan.members}
    assert planned == set(plan.cases)
