"""Submitter actors: parse the message, run the handler, send what it returns after commit."""

from __future__ import annotations

import dramatiq

from common.actors import declare, utc_now
from common.messages import CheckBatches, ProcessBatch, SubmitFullBatches, SubmitUpdates
from common.runtime import Runtime
from services.submitter import flow


def register(runtime: Runtime) -> list[dramatiq.Actor[..., None]]:
    """Declare the submitter's actors on the runtime's broker.

    Submitting claims updates before posting them and records a marker first, so a retried
    or redelivered message never posts an operation twice; a batch's results are applied
    once (``response_processed``), and polling a batch that is not finished changes nothing.
    """
    deps = flow.Deps(runtime.engine, runtime.mailchimp, utc_now, runtime.settings.posting_grace)
    return [
        declare(runtime, SubmitUpdates, lambda message: flow.submit(deps, message)),
        declare(
            runtime, SubmitFullBatches, lambda message: flow.submit_full_batches(deps, message)
        ),
        declare(runtime, ProcessBatch, lambda message: flow.process(deps, message)),
        declare(
            runtime,
            CheckBatches,
            lambda message: flow.check(deps, message),
            max_retries=0,
            repeated=True,
        ),
    ]
