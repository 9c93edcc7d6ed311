"""The control API under `/_sim/` (no auth): set up state, act as a contact, inject faults,
read logs. Thin: each route parses JSON and calls one Simulator method."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request, Response

from sim.mailchimp import errors
from sim.mailchimp.render import render_member
from sim.mailchimp.simulator import Fault

if TYPE_CHECKING:
    from sim.mailchimp.simulator import Simulator


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.ApiError(400, "JSON Parse Error", "The body is not valid JSON.") from None


def build_router(sim: Simulator) -> APIRouter:
    """All `/_sim/` routes bound to one simulator."""
    router = APIRouter(prefix="/_sim")

    @router.get("/health")
    async def health() -> Response:
        return _json({"ok": True})

    @router.post("/reset")
    async def reset() -> Response:
        sim.reset()
        return _json({"ok": True})

    @router.post("/accounts")
    async def create_account(request: Request) -> Response:
        body = await _body(request)
        account = sim.create_account(body.get("name") or "Simulated Org", body.get("api_key"))
        return _json(
            {
                "api_key": account.api_key,
                "account_id": account.account_id,
                "account_name": account.account_name,
                "dc": account.api_key.rsplit("-")[-1],
            }
        )

    @router.post("/lists")
    async def create_list(request: Request) -> Response:
        body = await _body(request)
        if sim.account_for_key(body.get("api_key", "")) is None:
            raise errors.api_key_invalid()
        options = {
            k: body[k] for k in ("merge_fields", "interest_categories", "double_optin") if k in body
        }
        audience = sim.create_list(
            body["api_key"], body.get("name") or "Newsletter", body.get("id"), **options
        )
        return _json(list_summary(audience))

    @router.post("/lists/{list_id}/members/import")
    async def import_members(list_id: str, request: Request) -> Response:
        records = await _body(request)
        if not isinstance(records, list):
            raise errors.invalid_resource("Send a JSON array of member records.")
        return _json({"imported": sim.import_members(list_id, records)})

    @router.post("/lists/{list_id}/members/seed")
    async def seed_members(list_id: str, request: Request) -> Response:
        body = await _body(request)
        seeded = sim.seed_members(list_id, int(body.get("count", 0)), int(body.get("seed", 1)))
        return _json({"seeded": seeded, "total": len(sim.audience(list_id).members)})

    @router.post("/lists/{list_id}/members/{slot}/actions/{action}")
    async def act(list_id: str, slot: str, action: str, request: Request) -> Response:
        body = await _body(request)
        events = sim.act(list_id, slot, action, body.get("source", "user"), body)
        return _json({"events": [event.kind for event in events]})

    @router.get("/lists/{list_id}/members")
    async def dump_members(list_id: str) -> Response:
        return _json(dump_list(sim, list_id))

    @router.get("/requests")
    async def requests_seen() -> Response:
        with sim.lock:
            return _json(
                {
                    "counts": dict(sim.request_counts),
                    "batch_operation_counts": dict(sim.operation_counts),
                    "recent": list(sim.request_log),
                    "peak_in_flight": max(
                        (a.peak_in_flight for a in sim.accounts.values()), default=0
                    ),
                }
            )

    @router.delete("/requests")
    async def forget_requests() -> Response:
        with sim.lock:
            sim.request_counts.clear()
            sim.operation_counts.clear()
            sim.request_log.clear()
            for account in sim.accounts.values():
                account.peak_in_flight = 0
        return Response(b"", 204)

    @router.get("/switches")
    async def get_switches() -> Response:
        return _json(asdict(sim.switches))

    @router.patch("/switches")
    async def set_switches(request: Request) -> Response:
        return _json(asdict(sim.set_switches(**await _body(request))))

    @router.post("/faults")
    async def add_fault(request: Request) -> Response:
        body = await _body(request)
        sim.add_fault(fault_from_json(body))
        return _json({"faults": [asdict(f) for f in sim.faults]})

    @router.get("/faults")
    async def get_faults() -> Response:
        return _json({"faults": [asdict(f) for f in sim.faults]})

    @router.delete("/faults")
    async def clear_faults() -> Response:
        with sim.lock:
            sim.faults.clear()
        return Response(b"", 204)

    @router.get("/webhook-deliveries")
    async def deliveries() -> Response:
        done = [
            {"url": d.url, "form": d.form, "attempts": d.attempts, "outcome": d.outcome}
            for d in sim.deliverer.delivered
        ]
        return _json({"deliveries": done})

    return router


def fault_from_json(body: dict[str, Any]) -> Fault:
    """`{kind, count?, status?, seconds?, retry_after?, path_prefix?, method?}`;
    count null/absent means 1 (latency: absent means every request)."""
    kind = body.get("kind", "")
    default_count = None if kind == "latency" else 1
    return Fault(
        kind=kind,
        remaining=body.get("count", default_count),
        status=int(body.get("status", 503)),
        seconds=float(body.get("seconds", 0.0)),
        retry_after=int(body.get("retry_after", 1)),
        path_prefix=body.get("path_prefix", ""),
        method=body.get("method"),
    )


def list_summary(audience: Any) -> dict[str, Any]:
    return {
        "id": audience.id,
        "name": audience.name,
        "merge_fields": [
            {"tag": f.tag, "type": f.type, "required": f.required} for f in audience.merge_fields
        ],
        "interest_categories": [
            {
                "id": c.id,
                "title": c.title,
                "interests": [{"id": i.id, "name": i.name} for i in c.interests],
            }
            for c in audience.categories
        ],
    }


def dump_list(sim: Simulator, list_id: str) -> dict[str, Any]:
    """Every member (API shape plus `unsubscribed_by`), status counts and tombstones."""
    with sim.lock:
        audience = sim.audience(list_id)
        dumped = []
        for member in audience.index.everyone:
            item = render_member(member, audience)
            item["unsubscribed_by"] = member.unsubscribed_by or ""
            dumped.append(item)
        return {
            "members": dumped,
            "counts": dict(audience.counts),
            "tombstones": sorted(audience.tombstones),
        }
