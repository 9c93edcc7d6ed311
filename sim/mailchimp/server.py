"""Run the simulator's HTTP server in a daemon thread (tests, demo)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn

from sim.mailchimp.app import API_PREFIX, create_app
from sim.mailchimp.simulator import Simulator


class RunningSimulator:
    """A started server: `.base_url`, `.api_url` (base + /3.0), `.simulator`, `.stop()`."""

    def __init__(
        self,
        simulator: Simulator,
        server: uvicorn.Server,
        thread: threading.Thread,
        host: str,
        port: int,
    ) -> None:
        self.simulator = simulator
        self.server = server
        self.thread = thread
        self.base_url = f"http://{host}:{port}"
        self.api_url = self.base_url + API_PREFIX

    def stop(self) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()


def run_in_thread(
    simulator: Simulator | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningSimulator:
    """Start uvicorn on host:port (0 = any free port) and wait until it accepts."""
    simulator = simulator or Simulator()
    config = uvicorn.Config(
        create_app(simulator),
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        ws="none",
        timeout_graceful_shutdown=1,
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mailchimp-sim", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the Mailchimp simulator did not start")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    return RunningSimulator(simulator, server, thread, host, bound_port)
