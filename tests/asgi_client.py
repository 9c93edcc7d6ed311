"""Driving an ASGI app in-process from any test folder: Starlette's TestClient, or the app
served by uvicorn in a thread (``serve_in_thread``) for clients that need a real socket.

Starlette 1.10 wants httpx2 for its TestClient and warns (an error under our pytest
settings) when it falls back to httpx; drop this once httpx2 is a dev dependency.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

__all__ = ["Served", "TestClient", "serve_in_thread"]


@dataclass
class Served:
    base_url: str


@contextmanager
def serve_in_thread(app: object) -> Iterator[Served]:
    """uvicorn on 127.0.0.1, any free port, in a daemon thread; stopped on exit."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="served-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
