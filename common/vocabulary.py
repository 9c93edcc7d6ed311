"""The seed's vocabulary: stage names and status values are a contract; keep their spelling."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Stage(StrEnum):
    """Stages of one audience's sync, in the seed's order (``stop_on`` names them)."""

    READY_TO_FETCH = "readyToFetch"
    READY_TO_FIX_CONTACT_IDS = "readyToFixContactIds"
    READY_TO_CREATE_NEW_CONTACTS_FROM_MAILCHIMP = "readyToCreateNewContactsFromMailchimp"
    READY_TO_CLEAN_UP_DUPLICATES = "readyToCleanUpDuplicates"
    READY_TO_ADD_CIVI_ONLY = "readyToAddCiviOnly"
    READY_TO_CHECK_FOR_GROUP_CHANGES = "readyToCheckForGroupChanges"
    READY_TO_CHECK_FOR_DATA_UPDATES = "readyToCheckForDataUpdates"
    READY_TO_RECONCILE_QUEUE = "readyToReconcileQueue"
    READY_TO_SUBMIT_UPDATES = "readyToSubmitUpdates"


class SyncStatus(StrEnum):
    """``civicrm_mailchimpsync_cache.sync_status``."""

    OK = "ok"
    TODO = "todo"
    LIVE = "live"
    REDO = "redo"
    FAIL = "fail"


class MailchimpStatus(StrEnum):
    """A member's status at Mailchimp."""

    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    CLEANED = "cleaned"
    PENDING = "pending"
    TRANSACTIONAL = "transactional"
    ARCHIVED = "archived"


SUBSCRIBING = frozenset({MailchimpStatus.SUBSCRIBED, MailchimpStatus.PENDING})


class GroupStatus(StrEnum):
    """``civicrm_group_contact.status`` and ``civicrm_subscription_history.status``."""

    ADDED = "Added"
    REMOVED = "Removed"
    PENDING = "Pending"


class BatchStatus(StrEnum):
    """Mailchimp's batch statuses, plus ``aborted`` which only we set."""

    PENDING = "pending"
    PREPROCESSING = "preprocessing"
    STARTED = "started"
    FINALIZING = "finalizing"
    FINISHED = "finished"
    ABORTED = "aborted"


class ResponseProcessed(IntEnum):
    """``civicrm_mailchimpsync_batch.response_processed``."""

    NOT_RECEIVED = 0
    PROCESSING = 1
    DONE = 2


class TrustOverride(StrEnum):
    """A one-shot override of which side is right, per subscription or interest."""

    NONE = ""
    MAILCHIMP = "Mailchimp"
    CIVICRM = "CiviCRM"


SYNC_METHOD = "MCsync"
"""``civicrm_subscription_history.method`` for every change the sync makes."""

NEW_CONTACT_SOURCE = "mailchimpsync"

# The plugin data last queued for Mailchimp, kept in ``civicrm_data`` so unchanged data is not
# sent again; a failed update forgets it, so the next decision sends the data again.
PLUGIN_DATA_SENT = "sent_to_mailchimp"
"""``civicrm_contact.source`` of contacts created from Mailchimp."""
