"""A parked run's reason, told as the bounded ``why`` of ``mcsync_runs_parked``."""

from __future__ import annotations

import pytest

from common.metrics import parked_why


@pytest.mark.parametrize(
    ("reason", "why"),
    [
        ("max_time of 300 s reached", "max_time"),
        ("stopped before readyToSubmitUpdates (stop_on)", "stop_on"),
        ("Mailchimp refused the members page: 401 API Key Invalid", "mailchimp_refused"),
        (
            "the CRM cannot be synced: no table civicrm_email: is this CiviCRM's database?",
            "crm_unfit",
        ),
        ("something new", "other"),
    ],
)
def test_each_parked_reason_has_its_kind(reason: str, why: str) -> None:
    assert parked_why(reason) == why
