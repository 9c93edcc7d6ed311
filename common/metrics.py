"""Prometheus metrics: what every process counts, and what the web service reads from Postgres.

Counters live in each process (workers and ``mcsync serve``), each serving its own
``/metrics``; Prometheus adds them up across pods. What the database knows better than any
one process (open batches, the last completed sync, parked runs) is read from Postgres when
``/metrics`` of the web service is scraped (``AudienceCollector``). Metric families are
declarations on prometheus-client's default registry, as its documentation has it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import dramatiq
import sqlalchemy as sa
from dramatiq.broker import MessageProxy
from prometheus_client import Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from common.runs import CRM_UNFIT, stopped_as_asked

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series: noise

MESSAGES = Counter(
    "mcsync_messages",
    "Messages handled, by actor and outcome (processed, retried, dead_lettered).",
    ["actor", "outcome"],
)
MESSAGE_SECONDS = Histogram(
    "mcsync_message_duration_seconds",
    "Time to handle one message, by actor.",
    ["actor"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
MAILCHIMP_REQUESTS = Counter(
    "mcsync_mailchimp_requests",
    "Requests to Mailchimp by method, endpoint and status (or 'no answer').",
    ["method", "endpoint", "status"],
)
MAILCHIMP_RETRIES = Counter(
    "mcsync_mailchimp_retries",
    "Requests to Mailchimp retried by the client (429, 5xx, connection errors).",
    ["method", "endpoint"],
)
MEMBERS_FETCHED = Counter(
    "mcsync_members_fetched", "Members fetched from Mailchimp into the cache.", ["audience"]
)
ROWS_DECIDED = Counter(
    "mcsync_rows_decided",
    "Cache rows decided, by outcome (in_sync, added_to_group, removed_from_group, queued, failed).",
    ["audience", "outcome"],
)
UPDATES_QUEUED = Counter("mcsync_updates_queued", "Updates queued for Mailchimp.", ["audience"])
UPDATES_SUBMITTED = Counter(
    "mcsync_updates_submitted", "Updates posted to Mailchimp in batches.", ["audience"]
)
UPDATE_RESULTS = Counter(
    "mcsync_update_results",
    "Results of submitted updates, by outcome (ok, redo, fail, missing).",
    ["audience", "outcome"],
)
RUNS_PARKED = Counter(
    "mcsync_runs_parked",
    "Runs parked, by why (max_time, stop_on, mailchimp_refused, crm_unfit).",
    ["audience", "why"],
)
CRM_SECONDS = Histogram(
    "mcsync_crm_seconds",
    "Time spent on CiviCRM's database (MCSYNC_CRM_URL), by operation: refresh (the run's "
    "CRM facts), insert_contacts, set_memberships, put_emails_on_hold, add_emails, "
    "set_contact_names, freshen.",
    ["operation"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
SYNC_SECONDS = Histogram(
    "mcsync_sync_duration_seconds",
    "Completed syncs, from their start to their end.",
    ["audience"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400),
)

_IDS = (
    (re.compile(r"/lists/[^/]+"), "/lists/{list_id}"),
    (re.compile(r"/members/[0-9a-fA-F]{32}"), "/members/{subscriber_hash}"),
    (re.compile(r"/batches/[^/]+"), "/batches/{batch_id}"),
    (re.compile(r"/webhooks/[^/]+"), "/webhooks/{webhook_id}"),
    (re.compile(r"/batch-webhooks/[^/]+"), "/batch-webhooks/{batch_webhook_id}"),
    (re.compile(r"/interest-categories/[^/]+"), "/interest-categories/{category_id}"),
)


def endpoint(path: str) -> str:
    """A Mailchimp path with its ids replaced by placeholders, for a bounded label set."""
    for pattern, placeholder in _IDS:
        path = pattern.sub(placeholder, path)
    return path


def parked_why(reason: str) -> str:
    """The kind of a run's parked reason, for a bounded label set."""
    if stopped_as_asked(reason):
        return "stop_on"
    if reason.startswith("max_time"):
        return "max_time"
    if reason.startswith("Mailchimp refused"):
        return "mailchimp_refused"
    if reason.startswith(CRM_UNFIT):
        return "crm_unfit"
    return "other"


class MessageMetrics(dramatiq.Middleware):
    """Counts and times every message a worker handles."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._started[message.message_id] = time.perf_counter()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        started = self._started.pop(message.message_id, None)
        if started is not None:
            MESSAGE_SECONDS.labels(message.actor_name).observe(time.perf_counter() - started)
        if exception is None:
            outcome = "processed"
        else:
            outcome = "dead_lettered" if getattr(message, "failed", False) else "retried"
        MESSAGES.labels(message.actor_name, outcome).inc()

    after_skip_message = after_process_message


class AudienceCollector(Collector):
    """Per audience, from Postgres at each scrape: open batches and the age of the oldest,
    unsubmitted updates, the last completed sync's end and duration, whether a run is going
    and whether (and why) it is parked. Small tables and a partial index: a few ms."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.engine.connect() as conn:
            rows = conn.execute(_AUDIENCES).all()
        now = datetime.now(UTC)
        families = {
            name: GaugeMetricFamily(f"mcsync_{name}", text, labels=["audience"])
            for name, text in _GAUGES.items()
        }
        parked = GaugeMetricFamily(
            "mcsync_run_parked",
            "1 while the audience's run is parked, by why.",
            labels=["audience", "why"],
        )
        for row in rows:
            audience = [row.list_id]
            families["open_batches"].add_metric(audience, row.open_batches)
            oldest = (now - row.oldest_batch).total_seconds() if row.oldest_batch else 0.0
            families["oldest_open_batch_age_seconds"].add_metric(audience, oldest)
            families["updates_unsubmitted"].add_metric(audience, row.unsubmitted)
            families["run_active"].add_metric(audience, 1.0 if row.active else 0.0)
            if row.last_sync_end is not None:
                families["last_sync_timestamp_seconds"].add_metric(
                    audience, row.last_sync_end.timestamp()
                )
            if row.last_sync_end is not None and row.last_sync_at is not None:
                took = (row.last_sync_end - row.last_sync_at).total_seconds()
                families["last_sync_duration_seconds"].add_metric(audience, took)
            if row.parked_reason:
                parked.add_metric([row.list_id, parked_why(row.parked_reason)], 1.0)
        yield from families.values()
        yield parked


_GAUGES = {
    "open_batches": "Our batches at Mailchimp whose results are not applied yet.",
    "oldest_open_batch_age_seconds": "Age of the oldest of those batches (0: none).",
    "updates_unsubmitted": "Updates queued and not yet posted to Mailchimp.",
    "run_active": "1 while a run of the audience is going (not parked).",
    "last_sync_timestamp_seconds": "When the last completed sync ended (Unix time).",
    "last_sync_duration_seconds": "How long the last completed sync took.",
}
_AUDIENCES = sa.text("""
    SELECT c.mailchimp_list_id AS list_id,
        s.run_id IS NOT NULL AND s.parked_reason IS NULL AS active, s.parked_reason,
        s.last_sync_at, s.last_sync_finished_at AS last_sync_end,
        b.open_batches, b.oldest_batch,
        (SELECT count(*) FROM civicrm_mailchimpsync_update u
            JOIN civicrm_mailchimpsync_cache k ON k.id = u.mailchimpsync_cache_id
            WHERE u.mailchimpsync_batch_id IS NULL AND NOT u.completed
              AND k.mailchimp_list_id = c.mailchimp_list_id) AS unsubmitted
    FROM mailchimpsync_connection c
    LEFT JOIN civicrm_mailchimpsync_status s ON s.list_id = c.mailchimp_list_id
    CROSS JOIN LATERAL (
        SELECT count(*) AS open_batches, min(submitted_at) AS oldest_batch
        FROM civicrm_mailchimpsync_batch
        WHERE mailchimp_list_id = c.mailchimp_list_id AND response_processed < 2
          AND coalesce(status, '') <> 'aborted'
    ) AS b
    ORDER BY c.mailchimp_list_id
""")
