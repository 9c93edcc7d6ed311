"""Reconciler actors: parse the message, run the handler, send what it returns after commit."""

from __future__ import annotations

import dramatiq

from common.actors import declare, utc_now
from common.messages import ReconcileChunk, RunCrmStages, SyncMember
from common.runtime import Runtime
from services.reconciler import handlers, member_now
from services.reconciler.plugins import discover


def register(runtime: Runtime) -> list[dramatiq.Actor[..., None]]:
    """Declare the reconciler's actors on the runtime's broker.

    ``sync_member`` claims its stored webhook event in the transaction that acts on it, so a
    redelivered message finds it done. ``run_crm_stages`` holds the audience's status row
    while a stage runs and moves the stage on in the same transaction, so a redelivered
    message finds the stage done. A chunk only claims rows still ``todo``, so deciding it
    again finds nothing to do.
    """
    plugins = discover()
    deps = handlers.Deps(runtime.engine, utc_now, plugins, runtime.crm)
    now_deps = member_now.Deps(runtime.engine, runtime.mailchimp, utc_now, plugins, runtime.crm)
    return [
        declare(runtime, RunCrmStages, lambda message: handlers.run_crm_stages(deps, message)),
        declare(runtime, ReconcileChunk, lambda message: handlers.reconcile_chunk(deps, message)),
        declare(runtime, SyncMember, lambda message: member_now.sync_member(now_deps, message)),
    ]
