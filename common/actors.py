"""Declaring actors: a message route, its handler and explicit options, bound to a broker.

Nothing is declared at import time: each service's ``actors.register(broker, runtime)``
calls ``declare`` when its worker process starts. An actor parses its message, calls the
handler (which commits its own transaction) and only then sends the messages it returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import dramatiq
from dramatiq.broker import MessageProxy

from common import logs
from common.db import runs
from common.mailchimp import MailchimpTransientError
from common.messages import (
    FetchPage,
    Message,
    MessageError,
    ReconcileChunk,
    StartSync,
    SubmitUpdates,
)
from common.outages import FailureLog, describe, outage
from common.runs import InvalidRunParameter
from common.runtime import Runtime
from common.vocabulary import Stage

log = logging.getLogger(__name__)

M = TypeVar("M", bound=Message)

NEVER_RETRIED: tuple[type[Exception], ...] = (MessageError, InvalidRunParameter)
# The stage a message's work belongs to, bound to its log records (RunCrmStages binds each
# stage as it runs it).
STAGE_OF = {
    StartSync.actor: Stage.READY_TO_FETCH.value,
    FetchPage.actor: Stage.READY_TO_FETCH.value,
    ReconcileChunk.actor: Stage.READY_TO_RECONCILE_QUEUE.value,
    SubmitUpdates.actor: Stage.READY_TO_SUBMIT_UPDATES.value,
}


def declare(
    runtime: Runtime,
    route: type[M],
    handler: Callable[[M], list[Message]],
    *,
    max_retries: int = 10,
    time_limit_ms: int = 15 * 60_000,
    min_backoff_ms: int = 1_000,
    max_backoff_ms: int = 5 * 60_000,
    repeated: bool = False,
) -> dramatiq.Actor[..., None]:
    """Bind ``handler`` to ``route`` on the runtime's broker.

    Mailchimp still failing after the client's own retries, or a server of ours not
    answering (an outage), is retried later with one warning line per try, not dramatiq's
    ERROR traceback: retrying is its handling. A ``repeated`` message (sent again every
    tick, as ``CheckBatches``) that meets an outage is dropped instead, the next one
    covering it, and the outage is logged once when it starts and once when it ends."""
    failures = FailureLog(route.actor, log)

    stage = STAGE_OF.get(route.actor)

    def perform(**payload: Any) -> None:
        message = route.from_wire(payload)
        with logs.bound(
            audience_id=getattr(message, "list_id", None),
            run_id=getattr(message, "run_id", None) or None,
            stage=stage,
        ):
            handle(message)

    def handle(message: M) -> None:
        try:
            replies = handler(message)
        except MailchimpTransientError as error:
            log.warning("%s: %s; the message is retried later", route.actor, error)
            raise dramatiq.Retry(f"{type(error).__name__}: {error}") from error
        except Exception as error:
            if outage(error) is None:
                raise  # a bug: dramatiq's traceback, retries, then the dead-letter queue
            if repeated:
                failures.failed(error)
                return
            log.warning("%s: %s; the message is retried later", route.actor, describe(error))
            raise dramatiq.Retry(describe(error)) from error
        failures.worked()
        runtime.send(*replies)

    perform.__name__ = route.actor
    decorate = dramatiq.actor(
        broker=runtime.broker,
        actor_name=route.actor,
        queue_name=route.queue,
        max_retries=max_retries,
        time_limit=time_limit_ms,
        min_backoff=min_backoff_ms,
        max_backoff=max_backoff_ms,
        throws=NEVER_RETRIED,
    )
    return decorate(perform)


def utc_now() -> datetime:
    return datetime.now(UTC)


class DeadLetterLog(dramatiq.Middleware):
    """When a message gives up (dead-lettered), say so in its audience's status log.

    Install it before Retries: after-hooks run in reverse order, so it then sees the
    verdict Retries has just given.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: object = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None or not getattr(message, "failed", False):
            return
        list_id = message.kwargs.get("list_id")
        reason = f"{message.actor_name} gave up after {message.options.get('retries', 0)} tries: "
        if isinstance(exception, dramatiq.Retry):
            reason += str(exception)  # the error it stands for, already named
        else:
            reason += f"{type(exception).__name__}: {exception}"
        log.error("dead-lettered %s: %s", message.message_id, reason)
        if isinstance(list_id, str):
            with self.runtime.engine.begin() as conn:
                runs.log(conn, list_id, reason[:1000], utc_now())
