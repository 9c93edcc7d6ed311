"""A deterministic, realistic mix of CRM contacts and Mailchimp members for the demo.

Pure: builds plain data from a size and a seed; `mcsync.demo` writes it to both sides.
Every case the sync must handle appears: people subscribed on both sides, unsubscribed on
either side, new on each side, one address shared by several contacts, deleted contacts,
cleaned / archived / pending / transactional members, on-hold emails, interests.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

FIRST_NAMES = (
    "Ada", "Ben", "Cleo", "Dev", "Esme", "Femi", "Gus", "Hana", "Ivo", "Jun",
    "Kemi", "Lior", "Mina", "Nils", "Oona", "Pau", "Quin", "Rosa", "Sami", "Tove",
)  # fmt: skip
LAST_NAMES = (
    "Abara", "Berg", "Costa", "Dahl", "Eze", "Fox", "Gale", "Hart", "Ito", "Jansen",
    "Khan", "Lund", "Moss", "Nakamura", "Okafor", "Park", "Quist", "Reyes", "Silva", "Tan",
)  # fmt: skip

MATCHED = "subscribed on both sides"

INTERESTS = ("events", "newsletter")
"""Interest keys; the demo maps each to a CRM group and a Mailchimp interest."""


@dataclass(frozen=True)
class PlannedMembership:
    """A CRM group membership and the date of its newest subscription-history row."""

    status: str
    date: datetime


@dataclass(frozen=True)
class PlannedContact:
    first_name: str
    last_name: str
    emails: tuple[tuple[str, bool], ...]
    """(address, on hold) pairs; the first is primary and bulk-mail."""
    is_deleted: bool = False
    subscription: PlannedMembership | None = None
    interests: dict[str, PlannedMembership] = field(default_factory=dict)
    case: str = MATCHED


@dataclass(frozen=True)
class PlannedMember:
    email: str
    status: str
    first_name: str
    last_name: str
    last_changed: datetime
    interests: dict[str, bool] = field(default_factory=dict)
    unsubscribed_by: str = ""
    case: str = MATCHED


@dataclass(frozen=True)
class DemoPlan:
    contacts: list[PlannedContact]
    members: list[PlannedMember]
    cases: Counter[str]


# Share of the audience per case, in parts per thousand; the rest are matched subscribers.
CASE_SHARES: dict[str, int] = {
    "subscribed at Mailchimp, not in the CRM group": 60,
    "new at Mailchimp (no contact)": 80,
    "unsubscribed at Mailchimp (no contact)": 30,
    "in the CRM group, not at Mailchimp": 80,
    "unsubscribed at Mailchimp, Added in the CRM (Mailchimp newer)": 40,
    "unsubscribed at Mailchimp, Added in the CRM (CRM newer)": 30,
    "unsubscribed on both sides": 40,
    "one email on several contacts": 20,
    "deleted contact subscribed at Mailchimp": 20,
    "cleaned at Mailchimp, Added in the CRM": 20,
    "archived at Mailchimp, Added in the CRM": 20,
    "pending at Mailchimp": 20,
    "transactional at Mailchimp": 20,
    "on-hold email Added in the CRM": 10,
}


def plan_demo(size: int, seed: int = 1, now: datetime | None = None) -> DemoPlan:
    """Plan ``size`` people, spread over the cases above in fixed shares."""
    if size < 1:
        raise ValueError("the demo needs at least one person")
    rng = random.Random(seed)
    builder = _Builder(rng, now or datetime(2026, 11, 1, tzinfo=UTC))
    for index, case in enumerate(_cases(size)):
        builder.add(case, index)
    return DemoPlan(builder.contacts, builder.members, builder.cases)


def _cases(size: int) -> list[str]:
    cases = [case for case, share in CASE_SHARES.items() for _ in range(size * share // 1000)]
    cases += [MATCHED] * (size - len(cases))
    random.Random(size).shuffle(cases)
    return cases


@dataclass
class _Builder:
    rng: random.Random
    now: datetime
    contacts: list[PlannedContact] = field(default_factory=list)
    members: list[PlannedMember] = field(default_factory=list)
    cases: Counter[str] = field(default_factory=Counter)
    case: str = MATCHED

    def add(self, case: str, index: int) -> None:
        self.cases[case] += 1
        self.case = case
        first, last = self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES)
        email = f"{first}.{last}.{index}@demo.example.org".lower()
        recent, older = self._dates()
        added, removed = PlannedMembership("Added", older), PlannedMembership("Removed", older)
        both = (first, last, email)
        match case:
            case "subscribed at Mailchimp, not in the CRM group":
                self._contact(both, subscription=removed)
                self._member(both, "subscribed", recent)
            case "new at Mailchimp (no contact)":
                self._member(both, self.rng.choice(("subscribed", "subscribed", "pending")), recent)
            case "unsubscribed at Mailchimp (no contact)":
                self._member(both, "unsubscribed", recent, unsubscribed_by="contact")
            case "in the CRM group, not at Mailchimp":
                self._contact(both, subscription=added)
            case "unsubscribed at Mailchimp, Added in the CRM (Mailchimp newer)":
                self._contact(both, subscription=added)
                self._member(both, "unsubscribed", recent, unsubscribed_by="contact")
            case "unsubscribed at Mailchimp, Added in the CRM (CRM newer)":
                self._contact(both, subscription=PlannedMembership("Added", recent))
                self._member(both, "unsubscribed", older, unsubscribed_by="admin")
            case "unsubscribed on both sides":
                self._contact(both, subscription=removed)
                self._member(both, "unsubscribed", recent, unsubscribed_by="contact")
            case "one email on several contacts":
                self._contact(both, subscription=added)
                self._contact((self.rng.choice(FIRST_NAMES), last, email))
                self._member(both, "subscribed", older)
            case "deleted contact subscribed at Mailchimp":
                self._contact(both, subscription=added, is_deleted=True)
                self._member(both, "subscribed", older)
            case "cleaned at Mailchimp, Added in the CRM":
                self._contact(both, subscription=PlannedMembership("Added", recent))
                self._member(both, "cleaned", older)
            case "archived at Mailchimp, Added in the CRM":
                self._contact(both, subscription=PlannedMembership("Added", recent))
                self._member(both, "archived", older)
            case "pending at Mailchimp":
                self._contact(both)
                self._member(both, "pending", recent)
            case "transactional at Mailchimp":
                self._member(both, "transactional", recent)
            case "on-hold email Added in the CRM":
                self._contact(both, subscription=added, on_hold=True)
            case _:
                self._matched(both, recent, older)

    def _matched(self, person: tuple[str, str, str], recent: datetime, older: datetime) -> None:
        crm_interests = {key: PlannedMembership("Added", older) for key in self._some_interests()}
        self._contact(
            person, subscription=PlannedMembership("Added", older), interests=crm_interests
        )
        mc_interests = {key: self.rng.random() < 0.5 for key in INTERESTS}
        self._member(person, "subscribed", recent, interests=mc_interests)

    def _some_interests(self) -> list[str]:
        return [key for key in INTERESTS if self.rng.random() < 0.4]

    def _dates(self) -> tuple[datetime, datetime]:
        older = self.now - timedelta(
            days=self.rng.randint(200, 900), seconds=self.rng.randint(0, 86399)
        )
        recent = self.now - timedelta(
            days=self.rng.randint(1, 150), seconds=self.rng.randint(0, 86399)
        )
        return recent, older

    def _contact(
        self,
        person: tuple[str, str, str],
        subscription: PlannedMembership | None = None,
        interests: dict[str, PlannedMembership] | None = None,
        is_deleted: bool = False,
        on_hold: bool = False,
    ) -> None:
        first, last, email = person
        self.contacts.append(
            PlannedContact(
                first,
                last,
                ((email, on_hold),),
                is_deleted,
                subscription,
                interests or {},
                self.case,
            )
        )

    def _member(
        self,
        person: tuple[str, str, str],
        status: str,
        last_changed: datetime,
        interests: dict[str, bool] | None = None,
        unsubscribed_by: str = "",
    ) -> None:
        first, last, email = person
        self.members.append(
            PlannedMember(
                email,
                status,
                first,
                last,
                last_changed,
                interests or {},
                unsubscribed_by,
                self.case,
            )
        )
