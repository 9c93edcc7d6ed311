"""Liveness, readiness and metrics of a process, for Kubernetes and Prometheus.

``/livez``: the process answers. ``/readyz``: 200 when what it needs answers (Postgres with
a current schema, the broker, its periodic work: ``common.health``), else 503 listing the
problems. ``/metrics``: Prometheus's text format. ``mcsync serve`` mounts them on its app;
a worker serves them on a port of its own (``MCSYNC_METRICS_PORT``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

Problems = Callable[[], list[str]]


def metrics_text(registries: Sequence[CollectorRegistry] = ()) -> bytes:
    """The process's metrics, and those of ``registries`` (metrics read at each scrape)."""
    return b"".join(generate_latest(registry) for registry in (REGISTRY, *registries))


def ready_answer(problems: list[str]) -> tuple[int, dict[str, object]]:
    if problems:
        return 503, {"ok": False, "problems": problems}
    return 200, {"ok": True}


def router(problems: Problems, registries: Sequence[CollectorRegistry] = ()) -> APIRouter:
    """The three routes for a FastAPI app (``mcsync serve``)."""
    routes = APIRouter()

    @routes.get("/livez", include_in_schema=False)
    def livez() -> dict[str, bool]:
        return {"ok": True}

    @routes.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        status, body = ready_answer(problems())
        return JSONResponse(body, status_code=status)

    @routes.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(metrics_text(registries), media_type=CONTENT_TYPE_LATEST)

    return routes


class PortUnavailable(OSError):
    """The probes' port cannot be listened on (taken, or not allowed)."""


class ProbeServer:
    """The three routes on ``host:port`` in a thread of their own (a worker process)."""

    def __init__(self, host: str, port: int, problems: Problems) -> None:
        handler = _handler(problems)
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as error:
            raise PortUnavailable(
                f"cannot serve the probes and metrics on port {port} ({error.strerror or error}); "
                "set MCSYNC_METRICS_PORT to a free port, or 0 for none"
            ) from error
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="probes", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        log.info("liveness, readiness and metrics on port %d", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(problems: Problems) -> type[BaseHTTPRequestHandler]:
    class Probes(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/livez":
                self._answer(200, "application/json", b'{"ok": true}')
            elif path == "/readyz":
                status, body = ready_answer(problems())
                self._answer(status, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                self._answer(200, CONTENT_TYPE_LATEST, metrics_text())
            else:
                self._answer(404, "application/json", b'{"ok": false, "error": "not found"}')

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a probe every few seconds is no news

    return Probes
