"""A TCP proxy in front of one of this machine's servers, to stage its outage.

Stopping the machine's RabbitMQ or Redis would break every other test and process using it;
the code under test connects through the proxy instead, and ``outage()`` drops its
connections and refuses new ones until the outage ends, as a server that went away would.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_port``, one thread pair per connection."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._down = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    def url(self, template: str) -> str:
        """``template`` with ``{port}`` replaced by the proxy's port."""
        return template.format(port=self.port)

    @contextmanager
    def outage(self) -> Iterator[None]:
        """Within the block, the server looks gone: connections dropped, new ones refused."""
        self._down.set()
        self._drop_all()
        try:
            yield
        finally:
            self._down.clear()

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._drop_all()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._down.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            with suppress(OSError):
                while chunk := source.recv(65536):
                    sink.sendall(chunk)
        finally:
            for end in (source, sink):
                self._shut(end)

    def _drop_all(self) -> None:
        with self._lock:
            ends = list(self._open)
        for end in ends:
            self._shut(end)

    def _shut(self, end: socket.socket) -> None:
        with self._lock:
            self._open.discard(end)
        with suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()
