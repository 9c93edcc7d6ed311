"""Reconciler actors: parse the message, run the handler, send what it returns after commit."""

from __future__ import annotations

import dramatiq

from common.actors import declare, utc_now
from common.messages import ReconcileChunk, RunCrmStages
from common.runtime import Runtime
from services.reconciler import handlers
from services.reconciler.plugins import discover


def register(runtime: Runtime) -> list[dramatiq.Actor[..., None]]:
    """Declare the reconciler's actors on the runtime's broker.

    ``run_crm_stages`` holds the audience's status row while a stage runs and moves the stage
    on in the same transaction, so a redelivered message finds the stage done. A chunk only
    claims rows still ``todo``, so deciding it again finds nothing to do.
    """
    deps = handlers.Deps(runtime.engine, utc_now, discover())
    return [
        declare(runtime, RunCrmStages, lambda message: handlers.run_crm_stages(deps, message)),
        declare(runtime, ReconcileChunk, lambda message: handlers.reconcile_chunk(deps, message)),
    ]
