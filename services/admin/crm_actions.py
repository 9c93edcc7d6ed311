"""The seed actions that work on our database: fetchandreconcile, getstatus, includeinsync,
updateconfig and MailchimpsyncCache.get."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from common.crm import civicrm
from common.db import cache, config, runs, stats
from common.db.config import SyncConnection
from common.mailchimp import InvalidApiKey, MailchimpError, MailchimpTransientError
from common.runs import InvalidRunParameter, parse_since, parse_stop_on
from common.sync_request import NothingToSync, SyncRequest, select_connections
from common.vocabulary import MailchimpStatus, SyncStatus
from services.admin.config_shape import config_json, parse_config
from services.admin.context import (
    Action,
    AdminContext,
    Conflict,
    NotFound,
    ParamError,
    Unavailable,
)
from services.admin.params import INT4_MAX, BigRowId, LongText, RowId, Text

log = logging.getLogger(__name__)

MAX_PAGE = 1000
MAX_CONTACTS = 100_000


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def json_safe(value: Any) -> Any:
    """Datetimes as ISO 8601 strings, decimals as numbers, containers walked."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


# --- fetchandreconcile ------------------------------------------------------------------------


class FetchAndReconcileParams(_Params):
    """The seed's ``fetchandreconcile`` parameters."""

    force_restart: bool = Field(
        False, description="emergency reset of the tracking state (does not abort running work)"
    )
    group_id: RowId | None = Field(
        None,
        validation_alias=AliasChoices("group_id", "id"),
        description="only the connection of this subscription group (alias: id)",
    )
    max_time: int = Field(
        300, ge=0, le=INT4_MAX, description="seconds of work per call; 0 means unlimited"
    )
    since: Text | None = Field(
        None, description="'ever', or a date such as 2019-12-11 (missing: since the last sync)"
    )
    stop_on: Text | None = Field(None, description="stop before this stage (developer use)")
    with_data: bool = Field(False, description="also run the data plugins (one-way data)")

    @field_validator("since")
    @classmethod
    def _since(cls, value: str | None) -> str | None:
        if value and value != "ever":
            _valid(parse_since, value)
        return value or None

    @field_validator("stop_on")
    @classmethod
    def _stop_on(cls, value: str | None) -> str | None:
        _valid(parse_stop_on, value)
        return value or None

    def request(self) -> SyncRequest:
        return SyncRequest(
            group_id=self.group_id,
            since=self.since,
            max_time=self.max_time,
            stop_on=self.stop_on,
            force_restart=self.force_restart,
            with_data=self.with_data,
        )


def _valid(parse: Any, value: Any) -> None:
    try:
        parse(value)
    except InvalidRunParameter as error:
        # The message starts with the parameter's name, which the 400 names already.
        raise ValueError(str(error).split(" ", 1)[1]) from None


def fetch_and_reconcile(ctx: AdminContext, params: FetchAndReconcileParams) -> dict[str, Any]:
    """Enqueue a StartSync per selected connection (the workers do the rest)."""
    request = params.request()
    with ctx.engine.connect() as conn:
        try:
            connections = select_connections(conn, request.group_id)
        except NothingToSync as error:
            if request.group_id is None:
                raise Conflict("no sync connection is configured (see updateconfig)") from None
            raise NotFound(str(error), "group_id") from None
    try:
        ctx.send(*(request.message(c.list_id) for c in connections))
    except Exception as error:  # any broker failure; a StartSync sent twice is harmless
        log.warning("fetchandreconcile: enqueueing failed", exc_info=True)
        raise Unavailable(f"could not enqueue the sync: {error}") from None
    return {
        "enqueued": [
            {"mailchimp_list_id": c.list_id, "group_id": c.subscription_group_id}
            for c in connections
        ],
        "since": request.since,
        "max_time": request.max_time,
        "stop_on": request.stop_on,
        "force_restart": request.force_restart,
        "with_data": request.with_data,
    }


# --- getstatus --------------------------------------------------------------------------------


class GetStatusParams(_Params):
    """The seed's ``getstatus`` parameters."""

    batches: bool = Field(
        False, description="also fetch the live status of our unfinished batches from Mailchimp"
    )
    stats: bool = Field(
        True,
        description="the statistics and fail reasons, which read the whole audience (false: "
        "only the stage, progress, lock, log and batches, cheap enough to poll)",
    )


def get_status(ctx: AdminContext, params: GetStatusParams) -> dict[str, Any]:
    """Stage, progress, lock, log, open batches and (``stats``) statistics of every
    connection."""
    now, stale_after = ctx.clock(), ctx.settings.stale_after
    with ctx.engine.connect() as conn:
        connections = config.load_connections(conn)
        titles = stats.group_titles(conn, [c.subscription_group_id for c in connections])
        report = []
        for c in connections:
            status = _connection_status(conn, c, now, stale_after)
            status["group_title"] = titles.get(c.subscription_group_id)
            if params.stats:
                status["stats"] = vars(stats.connection_stats(conn, c))
                status["fail_reasons"] = stats.fail_reasons(conn, c.list_id)
            report.append((c, status))
    if params.batches:
        for connection, status in report:
            for batch in status["batches"]:
                batch["mailchimp"] = _live_batch(ctx, connection.api_key, batch)
    return {"connections": [json_safe(status) for _, status in report]}


def _connection_status(
    conn: sa.Connection, connection: SyncConnection, now: datetime, stale_after: timedelta
) -> dict[str, Any]:
    state = runs.read(conn, connection.list_id)
    progress = stats.progress(conn, connection.list_id)
    return {
        "mailchimp_list_id": connection.list_id,
        "group_id": connection.subscription_group_id,
        "data_sync": connection.data_sync,
        "stage": state.stage.value if state else "readyToFetch",
        "lock": _lock(state, now, stale_after),
        "last_sync": state.last_sync_at if state else None,
        "last_sync_finished_at": state.last_sync_finished_at if state else None,
        "progress": _progress(progress),
        "batches": [
            {**vars(b), "stalled": b.stalled(now)}
            for b in stats.open_batches(conn, connection.list_id)
        ],
        "log": runs.read_log(conn, connection.list_id),
        "runs": runs.recent_runs(conn, connection.list_id),
    }


def _progress(progress: stats.Progress | None) -> dict[str, int]:
    """The run's counts: fetch pages, rows decided, updates not yet sent, batches open."""
    if progress is None:
        return dict.fromkeys(PROGRESS_COUNTS, 0)
    return {name: getattr(progress, name) for name in PROGRESS_COUNTS}


PROGRESS_COUNTS = (
    "pages_total",
    "pages_fetched",
    "rows_planned",
    "rows_decided",
    "unsubmitted",
    "batches_open",
)


def _lock(
    state: runs.RunState | None, now: datetime, stale_after: timedelta
) -> dict[str, Any] | None:
    if state is None or state.run_id is None:
        return None
    return {
        "run_id": state.run_id,
        "heartbeat_at": state.heartbeat_at,
        "parked_reason": state.parked_reason,
        "stale": state.stale(now, stale_after),
    }


def _live_batch(ctx: AdminContext, api_key: str, batch: dict[str, Any]) -> dict[str, Any]:
    """Mailchimp's view of one batch; a failure is reported in place, not raised."""
    batch_id = batch["mailchimp_batch_id"]
    if not batch_id:
        return {"error": "not posted to Mailchimp yet"}
    try:
        found = ctx.mailchimp(api_key).get(f"/batches/{batch_id}")
    except (MailchimpError, MailchimpTransientError, InvalidApiKey) as error:
        return {"error": str(error)}
    keys = ("status", "total_operations", "finished_operations", "errored_operations")
    return {key: found.get(key) for key in (*keys, "submitted_at", "completed_at")}


# --- includeinsync ----------------------------------------------------------------------------


class IncludeInSyncParams(_Params):
    """The seed's ``includeinsync`` parameters."""

    contact_id: RowId | Annotated[list[RowId], Field(min_length=1, max_length=MAX_CONTACTS)] = (
        Field(description="a contact id, or a list of them")
    )


def include_in_sync(ctx: AdminContext, params: IncludeInSyncParams) -> dict[str, Any]:
    """Every cache row of the contacts, in every audience, becomes ``todo``."""
    ids = params.contact_id if isinstance(params.contact_id, list) else [params.contact_id]
    with ctx.engine.begin() as conn:
        affected = cache.mark_contacts_todo(conn, ids)
    return {"affected": affected}


# --- updateconfig -----------------------------------------------------------------------------


class UpdateConfigParams(_Params):
    """The seed's ``updateconfig`` parameters."""

    config: LongText = Field(
        description="the whole configuration, JSON-encoded: "
        '{"accounts": [{"name", "api_key", "connections": [{"mailchimp_list_id", '
        '"subscription_group_id", "data_sync", "trust_override", '
        '"interests": [{"interest_id", "group_id", "trust_override"}]}]}]}'
    )


def update_config(ctx: AdminContext, params: UpdateConfigParams) -> dict[str, Any]:
    """Replace the configuration in one transaction; removed connections take their rows."""
    wanted = parse_config(params.config)
    with ctx.engine.begin() as conn:
        config.lock_config(conn)
        missing = _missing_groups(ctx, conn, wanted.group_ids())
        if missing:
            groups = ", ".join(map(str, missing))
            raise ParamError(f"config: no CRM group has the id {groups}", "config")
        removed = config.replace_config(conn, wanted.setups())
        stored = config.read_config(conn)
    log.info("configuration updated; audiences removed: %s", removed or "none")
    return {"config": config_json(stored), "removed_audiences": removed}


def stored_config(ctx: AdminContext) -> dict[str, Any]:
    """The configuration as ``updateconfig`` takes it, API keys in full: for the server only."""
    with ctx.engine.connect() as conn:
        return config_json(config.read_config(conn))


def crm_groups(ctx: AdminContext) -> list[tuple[int, str]]:
    """The CRM's groups a connection can use, (id, title) by title: CiviCRM's own with
    MCSYNC_CRM_URL."""
    if ctx.settings.embedded_crm:
        with ctx.engine.connect() as conn:
            return stats.groups(conn)
    with _civicrm(ctx) as engine:
        return civicrm.groups(engine)


def _missing_groups(ctx: AdminContext, conn: sa.Connection, group_ids: set[int]) -> list[int]:
    """The group ids the configured CRM lacks: CiviCRM's own groups with MCSYNC_CRM_URL."""
    if ctx.settings.embedded_crm:
        return config.missing_groups(conn, group_ids)
    with _civicrm(ctx) as engine:
        return civicrm.missing_groups(engine, group_ids)


@contextmanager
def _civicrm(ctx: AdminContext) -> Iterator[sa.Engine]:
    """CiviCRM's database for a few reads; a CRM that fails is Unavailable, saying why."""
    engine = civicrm.crm_engine(ctx.settings.crm_url)
    try:
        yield engine
    except sa.exc.SQLAlchemyError as error:
        found = civicrm.check(engine)
        raise Unavailable("; ".join(found.problems) or f"the CRM failed: {error}") from None
    finally:
        engine.dispose()


# --- MailchimpsyncCache.get -------------------------------------------------------------------


class CacheGetParams(_Params):
    """``MailchimpsyncCache.get``: filters on the cache's fields, the CRM status, paging."""

    id: BigRowId | None = None
    mailchimp_list_id: Text | None = None
    mailchimp_member_id: Text | None = None
    mailchimp_email: Text | None = Field(None, description="case-insensitive")
    mailchimp_status: MailchimpStatus | None = None
    civicrm_contact_id: RowId | None = None
    sync_status: SyncStatus | None = None
    civicrm_status: Literal["Added", "Removed"] | None = Field(
        None,
        description="membership of the row's contact in its connection's subscription group",
    )
    troubleshoot: bool = Field(
        False,
        description="add the contact, its emails, the newest subscription history per group "
        "of the audience and the row's open updates (expensive)",
    )
    limit: int = Field(25, ge=1, le=MAX_PAGE, description=f"rows per page, at most {MAX_PAGE}")
    offset: int = Field(0, ge=0, le=INT4_MAX)

    def where(self) -> stats.CacheFilter:
        return stats.CacheFilter(
            id=self.id,
            mailchimp_list_id=self.mailchimp_list_id,
            mailchimp_member_id=self.mailchimp_member_id,
            mailchimp_email=self.mailchimp_email,
            mailchimp_status=self.mailchimp_status.value if self.mailchimp_status else None,
            civicrm_contact_id=self.civicrm_contact_id,
            sync_status=self.sync_status.value if self.sync_status else None,
            civicrm_status=self.civicrm_status,
        )


def get_cache(ctx: AdminContext, params: CacheGetParams) -> dict[str, Any]:
    """The matching cache rows (a page, by id) and how many match in all."""
    where = params.where()
    with ctx.engine.connect() as conn:
        count = stats.count_cache(conn, where)
        values = stats.search_cache(conn, where, params.limit, params.offset)
        if params.troubleshoot and values:
            related = stats.troubleshooting(conn, [row["id"] for row in values])
            values = [{**row, **related.get(row["id"], {})} for row in values]
    return {"count": count, "values": json_safe(values)}


ACTIONS: tuple[Action, ...] = (
    Action(
        "fetchandreconcile",
        FetchAndReconcileParams,
        fetch_and_reconcile,
        "Start (or resume) the sync of every connection, or of one subscription group.",
    ),
    Action(
        "getstatus",
        GetStatusParams,
        get_status,
        "Statistics, stage, lock, log and open batches of every sync connection.",
    ),
    Action(
        "includeinsync",
        IncludeInSyncParams,
        include_in_sync,
        "Mark every cache row of the given contacts (all audiences) todo.",
    ),
    Action(
        "updateconfig",
        UpdateConfigParams,
        update_config,
        "Replace the whole configuration: accounts, connections, interest maps, overrides.",
    ),
    Action(
        "MailchimpsyncCache.get",
        CacheGetParams,
        get_cache,
        "Search the cache; civicrm_status=Added|Removed; troubleshoot=1 for related data.",
    ),
)
