"""Batch operations: envelope validation, the result archive and the background runner."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import tarfile
import time
from typing import TYPE_CHECKING, Any

import orjson

from sim.mailchimp import errors
from sim.mailchimp.model import BatchOperation, BatchResult

if TYPE_CHECKING:
    from sim.mailchimp.simulator import Simulator

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RESULTS_PATH = "/_sim/batch-results"


def _operation_problems(position: int, op: Any) -> list[dict[str, str]]:
    where = f"operations.item:{position}"
    if not isinstance(op, dict):
        return [{"field": where, "message": "Schema describes object"}]
    problems = []
    if op.get("method") not in METHODS:
        problems.append({"field": f"{where}.method", "message": "Value is not one of enum values"})
    if not isinstance(op.get("path"), str) or not op["path"]:
        problems.append({"field": f"{where}.path", "message": "Schema describes string"})
    if "body" in op and not isinstance(op["body"], str):
        message = f"Schema describes string, {type(op['body']).__name__} found instead"
        problems.append({"field": f"{where}.body", "message": message})
    if "params" in op and not isinstance(op["params"], dict):
        problems.append({"field": f"{where}.params", "message": "Schema describes object"})
    return problems


def parse_operations(body: Any) -> list[BatchOperation]:
    """Validate a POST /batches body; all problems go into one Invalid Resource."""
    if not isinstance(body, dict) or not isinstance(body.get("operations"), list):
        raise errors.schema_invalid([{"field": "operations", "message": "Schema describes array"}])
    problems = [p for n, op in enumerate(body["operations"]) for p in _operation_problems(n, op)]
    if problems:
        raise errors.schema_invalid(problems)
    return [
        BatchOperation(
            method=op["method"],
            path=op["path"],
            params=op.get("params") or {},
            body=op.get("body"),
            operation_id=op.get("operation_id"),
        )
        for op in body["operations"]
    ]


def build_archive(results: list[BatchResult], per_file: int, include_empty: bool) -> bytes:
    """gzip tar: a `./` directory entry, then `./<n>.json` arrays (plus an empty file)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.GNU_FORMAT) as archive:
        directory = tarfile.TarInfo("./")
        directory.type = tarfile.DIRTYPE
        directory.mode = 0o755
        archive.addfile(directory)
        chunks = [results[i : i + per_file] for i in range(0, len(results), per_file)] or [[]]
        for number, chunk in enumerate(chunks):
            _add_file(archive, f"./{number}.json", _results_json(chunk))
        if include_empty:
            _add_file(archive, f"./{len(chunks)}.json", b"")
    return buffer.getvalue()


def _results_json(chunk: list[BatchResult]) -> bytes:
    return orjson.dumps(
        [
            {"status_code": r.status_code, "operation_id": r.operation_id, "response": r.response}
            for r in chunk
        ]
    )


def _add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(time.time())
    archive.addfile(info, io.BytesIO(data))


def sign(secret: bytes, batch_id: str, expires: int) -> str:
    return hmac.new(secret, f"{batch_id}:{expires}".encode(), hashlib.sha256).hexdigest()


def results_url(base_url: str, secret: bytes, batch_id: str, expires: int) -> str:
    """A pre-signed, expiring download URL on the simulator itself (no auth needed)."""
    signature = sign(secret, batch_id, expires)
    return f"{base_url}{RESULTS_PATH}/{batch_id}.tar.gz?expires={expires}&signature={signature}"


def check_signature(secret: bytes, batch_id: str, expires: int, signature: str, now: float) -> bool:
    return expires >= now and hmac.compare_digest(sign(secret, batch_id, expires), signature)


class BatchRunner:
    """Runs each account's batches one at a time on the server's event loop."""

    def __init__(self, simulator: Simulator, loop: asyncio.AbstractEventLoop) -> None:
        self.simulator = simulator
        self.loop = loop
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def kick(self, api_key: str) -> None:
        """Make sure a runner is draining this account's queue; safe from any thread."""
        self.loop.call_soon_threadsafe(self._ensure_task, api_key)

    def _ensure_task(self, api_key: str) -> None:
        task = self.tasks.get(api_key)
        if task is None or task.done():
            self.tasks[api_key] = self.loop.create_task(self._drain(api_key))

    async def _drain(self, api_key: str) -> None:
        while (batch := self.simulator.start_next_batch(api_key)) is not None:
            while self.simulator.switches.batch_stuck and not batch.cancelled:
                await asyncio.sleep(0.05)
            for position, operation in enumerate(batch.operations):
                if batch.cancelled:
                    break
                await self._pause(position)
                self.simulator.run_batch_operation(api_key, batch, operation)
            if not batch.cancelled:
                self.simulator.finish_batch(api_key, batch)

    async def _pause(self, position: int) -> None:
        delay = self.simulator.switches.batch_operation_delay_seconds
        if delay > 0:
            await asyncio.sleep(delay)
        elif position % 100 == 0:
            await asyncio.sleep(0)  # let requests in between operations

    def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
