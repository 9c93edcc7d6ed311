"""Is a server up? Tests that need one skip locally without it, and fail under ``CI=true``."""

from __future__ import annotations

import os
import socket

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def require_server(host: str, port: int, what: str = "server") -> None:
    """Skip the test when nothing listens on ``host:port``; fail instead under ``CI=true``."""
    if port_open(host, port):
        return
    message = f"no {what} listening on {host}:{port}"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
