from common.vocabulary import Stage, SyncStatus

SEED_STAGES = [
    "readyToFetch",
    "readyToFixContactIds",
    "readyToCreateNewContactsFromMailchimp",
    "readyToCleanUpDuplicates",
    "readyToAddCiviOnly",
    "readyToCheckForGroupChanges",
    "readyToCheckForDataUpdates",
    "readyToReconcileQueue",
    "readyToSubmitUpdates",
]


def test_stages_keep_the_seed_names_in_the_seed_order() -> None:
    assert [stage.value for stage in Stage] == SEED_STAGES


def test_sync_statuses_are_the_seed_values() -> None:
    assert {status.value for status in SyncStatus} == {"ok", "todo", "live", "redo", "fail"}
