"""Periodic work on a thread of its own that outlives the outages of what it talks to.

The batch poller, the webhook relay and the schedule each do a small piece of work every so
often. A failure never ends the thread: the work is tried again with a growing pause (up to
``max_backoff_seconds``), the outage is logged once when it starts and once when it ends,
and ``healthy`` says whether the last try worked, for a readiness probe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from common.outages import FailureLog

log = logging.getLogger(__name__)


class Periodic:
    """Run ``work`` every ``every_seconds`` on a daemon thread named ``name`` until stopped;
    the first run comes at once when ``at_once``, else after one period."""

    def __init__(
        self,
        name: str,
        work: Callable[[], object],
        every_seconds: float,
        max_backoff_seconds: float = 60.0,
        at_once: bool = False,
    ) -> None:
        self.name = name
        self.work = work
        self.every_seconds = every_seconds
        self.max_backoff_seconds = max(max_backoff_seconds, every_seconds)
        self.at_once = at_once
        self.failure_log = FailureLog(name, log)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def healthy(self) -> bool:
        """The last try worked (or none failed yet)."""
        return self.failure_log.failing_since is None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the try in hand (if any); wait for the thread up to ``timeout``."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run_once(self) -> bool:
        """One try now; returns whether it worked. Never raises."""
        try:
            self.work()
        except Exception as error:  # the thread must outlive any failure: tried again later
            self.failure_log.failed(error)
            return False
        self.failure_log.worked()
        return True

    def pause(self) -> float:
        """Seconds until the next try: the period, doubled after each failure in a row."""
        failed = self.failure_log.failures
        if not failed:
            return self.every_seconds
        backoff: float = self.every_seconds * 2.0 ** (failed - 1)
        return min(backoff, self.max_backoff_seconds)

    def _run(self) -> None:
        if not self.at_once:
            self._stopping.wait(self.every_seconds)
        while not self._stopping.is_set():
            self.run_once()
            self._stopping.wait(self.pause())
