"""Worker processes: one service each in production, all of them in-process when embedded."""

from __future__ import annotations

import functools
import gc
import logging
import signal
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import dramatiq
from dramatiq.middleware import Retries

from common import health
from common.actors import DeadLetterLog
from common.broker import build_broker
from common.messages import CheckBatches
from common.metrics import MessageMetrics
from common.periodic import Periodic
from common.runtime import Runtime
from common.settings import Settings
from mcsync.probes import ProbeServer
from services.fetcher import actors as fetcher
from services.reconciler import actors as reconciler
from services.submitter import actors as submitter

log = logging.getLogger(__name__)

SERVICES: dict[str, Callable[[Runtime], list[dramatiq.Actor[..., None]]]] = {
    "fetcher": fetcher.register,
    "reconciler": reconciler.register,
    "submitter": submitter.register,
}


@dataclass
class Workers:
    """A broker, a runtime and a dramatiq worker consuming the given services' queues, and
    the process's periodic work (the batch poller, in a submitter)."""

    runtime: Runtime
    worker: dramatiq.Worker
    poll_seconds: float | None
    periodic: list[Periodic] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.poll_seconds:
            # Batch webhooks can be lost: look at unfinished batches now and then regardless.
            poll = functools.partial(self.runtime.send, CheckBatches())
            self.periodic.append(Periodic("batch poller", poll, self.poll_seconds))

    def start(self) -> None:
        self.worker.start()
        for work in self.periodic:
            work.start()

    def healthy(self) -> bool:
        """Every periodic work of the process ran the last time it tried."""
        return all(work.healthy for work in self.periodic)

    def problems(self) -> list[str]:
        """Why the process is not ready: what it needs does not answer (empty: ready)."""
        return health.problems(self.runtime.engine, self.runtime.settings, self.periodic)

    def stop(self) -> None:
        for work in self.periodic:
            work.stop()
        self.worker.stop()
        self.runtime.broker.close()
        self.runtime.close()


def build(
    settings: Settings,
    services: Iterable[str],
    threads: int = 8,
    poll_seconds: float | None = None,
) -> Workers:
    """Declare the services' actors on a broker built from settings and make their worker."""
    broker = build_broker(settings)
    runtime = Runtime.start(settings, broker)
    broker.add_middleware(DeadLetterLog(runtime), before=Retries)
    broker.add_middleware(MessageMetrics(), before=Retries)
    chosen = list(services)
    actors = [actor for name in chosen for actor in SERVICES[name](runtime)]
    polls = (poll_seconds or settings.batch_poll_seconds) if "submitter" in chosen else None
    # Only our own queues: sending to another service's queue declares it on this broker
    # too, and a worker would otherwise start consuming messages it has no actor for.
    queues = {actor.queue_name for actor in actors}
    worker = dramatiq.Worker(broker, queues=queues, worker_threads=threads, worker_timeout=100)
    return Workers(runtime, worker, polls)


# A unit of work (a page, a chunk) makes tens of thousands of objects that reference counting
# frees; at the default threshold (700) the cyclic collector ran every few hundred of them
# and walked the unit's live rows each time (3-4% of deciding a chunk; none at this one).
GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collection() -> None:
    """Leave what the process has loaded so far (modules, the actors, SQLAlchemy's and
    dramatiq's objects) out of every later cyclic garbage collection: it lives as long as the
    process, and each full collection walked all of it again (in a reconciler deciding
    chunks, about 40 ms per collection; its share of deciding a chunk fell from 8% to 4%).
    Then collect less often (``GC_THRESHOLDS``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


SCHEMA_WAIT_SECONDS = 10.0


def serve_forever(workers: Workers, port: int = 0) -> None:
    """Run until SIGTERM or SIGINT (Kubernetes stops pods with SIGTERM), with liveness,
    readiness and metrics on ``port`` (0: none). A database whose schema is behind the code
    is waited for (not ready meanwhile, said once), not worked on."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    server = ProbeServer("0.0.0.0", port, workers.problems) if port else None
    if server is not None:
        server.start()
    try:
        if _schema_current(workers, stopping):
            tune_garbage_collection()
            workers.start()
            log.info("worker running; stop with SIGTERM")
            stopping.wait()
            log.info("stopping: finishing messages in hand")
        workers.stop()
    finally:
        if server is not None:
            server.stop()


def _schema_current(workers: Workers, stopping: threading.Event) -> bool:
    """Wait until the database's schema is at the code's head; False if stopped first."""
    said = False
    while not stopping.is_set():
        problem = health.database_problem(workers.runtime.engine)
        if problem is None:
            return True
        if not said:
            log.warning("%s; waiting for it (checked every %.0f s)", problem, SCHEMA_WAIT_SECONDS)
            said = True
        stopping.wait(SCHEMA_WAIT_SECONDS)
    return False
