"""The local POS API (aiohttp): sales in, receipts out, status for store IT.

Every answer is JSON. Errors carry ``error`` (a stable code), ``message`` (for a person) and,
for invalid input, ``fields`` naming each offending field. Nothing invalid is stored.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import ValidationError

from agent.checkout import Checkout, NoPrinter, SaleConflict, UnknownSale
from agent.config import AgentConfig
from agent.db import Database, StorageFull
from agent.members import MemberDirectory, TagChange
from agent.outbox import BACKLOG_SQL, Outbox, outbox_depth
from agent.printing import PENDING_JOBS_SQL, PrinterWorker, jobs_by_printer
from agent.sale import InvalidSale, parse_sale
from agent.validation import FieldProblem, describe

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_VERSION = "1"


class Metrics:
    """The agent's Prometheus metrics, in a registry of their own (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "storelink_agent_request_seconds",
            "Local API request latency",
            ["route", "status"],
            registry=self.registry,
        )
        self.sales = Counter(
            "storelink_agent_sales", "Sales recorded", ["result"], registry=self.registry
        )
        self.outbox_depth = Gauge(
            "storelink_agent_outbox_unsent", "Events not yet acknowledged", registry=self.registry
        )
        self.print_jobs = Gauge(
            "storelink_agent_print_jobs", "Print jobs by state", ["state"], registry=self.registry
        )
        self.printer_up = Gauge(
            "storelink_agent_printer_available",
            "1 when the printer is reachable and ready",
            ["printer"],
            registry=self.registry,
        )
        self.oldest_unsent_age = Gauge(
            "storelink_agent_outbox_oldest_unsent_age_seconds",
            "Age of the oldest event not yet acknowledged by the cloud (0 when none)",
            registry=self.registry,
        )
        self.events = Counter(
            "storelink_agent_events_appended",
            "Events appended to the outbox since the agent started, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.dropped = Counter(
            "storelink_agent_events_dropped",
            "Telemetry events dropped (queue or storage full), by reason",
            ["reason"],
            registry=self.registry,
        )
        self.device_up = Gauge(
            "storelink_agent_device_available",
            "1 when the device is available, 0 when not",
            ["kind", "name"],
            registry=self.registry,
        )
        # Appended events are counted from the outbox itself (sales and telemetry alike):
        # each scrape adds the rows after the highest seq seen so far.
        self.seen_seq = 0
        self.seen_drops: dict[str, int] = {}
        # Scrapes at once (two Prometheus servers, a retry) would each add the same new rows.
        self._refreshing = asyncio.Lock()

    async def start(self, db: Database) -> None:
        """Count events from now on (the outbox's current end)."""
        ((last,),) = await db.reader.execute_fetchall("SELECT coalesce(max(seq), 0) FROM outbox")
        self.seen_seq = int(last)

    async def refresh(self, db: Database, outbox: Outbox, now_ms: int) -> None:
        """Bring the outbox and device series up to date (at each scrape)."""
        async with self._refreshing:
            await self._refresh(db, outbox, now_ms)

    async def _refresh(self, db: Database, outbox: Outbox, now_ms: int) -> None:
        conn = db.reader
        rows = await conn.execute_fetchall(
            "SELECT kind, count(*), max(seq) FROM outbox WHERE seq > ? GROUP BY kind",
            (self.seen_seq,),
        )
        for kind, count, last in rows:
            self.events.labels(kind).inc(count)
            self.seen_seq = max(self.seen_seq, int(last))
        ((unsent, oldest_ms),) = await conn.execute_fetchall(BACKLOG_SQL)
        self.outbox_depth.set(unsent)
        self.oldest_unsent_age.set(0 if oldest_ms is None else max(0, now_ms - oldest_ms) / 1000)
        for reason, count in outbox.stats.drop_reasons.items():
            delta = count - self.seen_drops.get(reason, 0)
            if delta > 0:
                self.dropped.labels(reason).inc(delta)
            self.seen_drops[reason] = count
        for kind, name, available in await conn.execute_fetchall(
            "SELECT kind, name, available FROM device_status"
        ):
            self.device_up.labels(kind, name).set(1 if available else 0)


CONFIG = web.AppKey("config", AgentConfig)
DB = web.AppKey("db", Database)
OUTBOX = web.AppKey("outbox", Outbox)
CHECKOUT = web.AppKey("checkout", Checkout)
MEMBERS = web.AppKey("members", MemberDirectory)
PRINTERS = web.AppKey("printers", dict[str, PrinterWorker])
METRICS = web.AppKey("metrics", Metrics)


def error_response(
    status: int, code: str, message: str, fields: list[FieldProblem] | None = None
) -> web.Response:
    """A JSON error answer."""
    body: dict[str, Any] = {"error": code, "message": message}
    if fields is not None:
        body["fields"] = [{"field": f.field, "message": f.message} for f in fields]
    return web.json_response(body, status=status)


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else ""
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].api.max_body_bytes
        response = error_response(413, "too_large", f"request body is larger than {limit} bytes")
    except web.HTTPException as exc:
        response = error_response(exc.status, "http", exc.reason)
    except StorageFull as err:
        log.error("refused a request: %s", err)  # noqa: TRY400 - expected condition, no traceback
        response = error_response(507, "storage_full", str(err))
    request.app[METRICS].requests.labels(route, str(response.status)).observe(
        time.perf_counter() - started
    )
    return response


@web.middleware
async def _bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path == "/metrics":
        return await handler(request)
    expected = request.app[CONFIG].api.key.get_secret_value()
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        return error_response(401, "unauthorized", "missing or wrong API key (Bearer token)")
    return await handler(request)


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _BadJson(str(err)) from err


class _BadJson(Exception):
    pass


def _sale_answer(recorded: Any, jobs: list[Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "sale_id": recorded.sale_id,
        "receipt_no": recorded.receipt_no,
        "receipt_url": recorded.receipt_url,
        "print": recorded.print_job.as_json() if recorded.print_job else None,
    }
    if jobs is not None:
        answer["sale"] = recorded.body
        answer["print_jobs"] = [j.as_json() for j in jobs]
    return answer


async def post_sale(request: web.Request) -> web.Response:
    """POST /v1/sales: validate, commit, queue the receipt; 201 once durable."""
    metrics = request.app[METRICS]
    try:
        sale = parse_sale(await _json_body(request))
    except _BadJson as err:
        metrics.sales.labels("invalid").inc()
        return error_response(400, "bad_json", f"request body is not valid JSON: {err}")
    except InvalidSale as err:
        metrics.sales.labels("invalid").inc()
        return error_response(422, "invalid_sale", str(err), err.problems)
    try:
        recorded = await request.app[CHECKOUT].record(sale)
    except SaleConflict as err:
        metrics.sales.labels("conflict").inc()
        return error_response(409, "sale_id_conflict", str(err))
    if recorded.created:
        metrics.sales.labels("recorded").inc()
        log.info("sale %s recorded as receipt %s", recorded.sale_id, recorded.receipt_no)
    else:
        metrics.sales.labels("repeat").inc()
    return web.json_response(_sale_answer(recorded), status=201 if recorded.created else 200)


async def get_sale(request: web.Request) -> web.Response:
    """GET /v1/sales/{sale_id}: the sale, its receipt and print jobs."""
    try:
        recorded, jobs = await request.app[CHECKOUT].get(request.match_info["sale_id"])
    except UnknownSale:
        return error_response(404, "not_found", "no sale with this sale_id")
    return web.json_response(_sale_answer(recorded, jobs))


async def reprint_sale(request: web.Request) -> web.Response:
    """POST /v1/sales/{sale_id}/reprint: print a copy, marked as such."""
    printer = request.query.get("printer")
    try:
        job = await request.app[CHECKOUT].reprint(request.match_info["sale_id"], printer)
    except UnknownSale:
        return error_response(404, "not_found", "no sale with this sale_id")
    except NoPrinter as err:
        return error_response(409, "no_printer", str(err))
    return web.json_response({"print": job.as_json()}, status=202)


async def get_member(request: web.Request) -> web.Response:
    """GET /v1/members/{member_id}: the member as the store's replica holds it."""
    view = await request.app[MEMBERS].view(request.match_info["member_id"])
    if view is None:
        return error_response(404, "not_found", "no member with this id in this store's slice")
    return web.json_response(view)


async def post_member_tags(request: web.Request) -> web.Response:
    """POST /v1/members/{member_id}/tags: add and remove tags; the cloud hears of it."""
    try:
        change = TagChange.model_validate(await _json_body(request))
    except _BadJson as err:
        return error_response(400, "bad_json", f"request body is not valid JSON: {err}")
    except ValidationError as err:
        problems = describe(err)
        return error_response(422, "invalid_tags", "; ".join(map(str, problems)), problems)
    view = await request.app[MEMBERS].change_tags(request.match_info["member_id"], change)
    if view is None:
        return error_response(404, "not_found", "no member with this id in this store's slice")
    return web.json_response(view)


async def status_snapshot(app: web.Application) -> dict[str, Any]:
    """Outbox, print queue and printer health, as the status page shows them."""
    conn = app[DB].reader
    depth, oldest = await outbox_depth(conn)
    jobs = jobs_by_printer(await conn.execute_fetchall(PENDING_JOBS_SQL))
    workers = app[PRINTERS]
    outbox = app[OUTBOX]
    return {
        "store_id": app[CONFIG].store.id,
        "api_version": API_VERSION,
        "outbox": {
            "unsent": depth,
            "oldest_unsent_at": oldest,
            "dropped": outbox.stats.dropped,
            "drop_reasons": outbox.stats.drop_reasons,
        },
        "printers": [
            {
                "name": printer.name,
                "uri": printer.uri,
                "available": workers[printer.name].available,
                "detail": workers[printer.name].detail,
                "jobs": jobs.get(printer.name, {}),
            }
            for printer in app[CONFIG].printers
        ],
    }


async def get_status(request: web.Request) -> web.Response:
    """GET /v1/status."""
    return web.json_response(await status_snapshot(request.app))


async def get_metrics(request: web.Request) -> web.Response:
    """GET /metrics in Prometheus text format."""
    app = request.app
    metrics = app[METRICS]
    # The backlog is read once, by refresh: the status snapshot would count it a second time.
    await metrics.refresh(app[DB], app[OUTBOX], int(time.time() * 1000))
    jobs = jobs_by_printer(await app[DB].reader.execute_fetchall(PENDING_JOBS_SQL))
    workers = app[PRINTERS]
    totals: dict[str, int] = {"queued": 0, "printing": 0, "failed": 0}
    for printer in app[CONFIG].printers:
        available = workers[printer.name].available
        metrics.printer_up.labels(printer.name).set(1 if available else 0)
        if available is not None:
            metrics.device_up.labels("printer", printer.name).set(int(available))
        for state, count in jobs.get(printer.name, {}).items():
            totals[state] = totals.get(state, 0) + count
    for state, count in totals.items():
        metrics.print_jobs.labels(state).set(count)
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(
    config: AgentConfig,
    db: Database,
    outbox: Outbox,
    checkout: Checkout,
    printers: dict[str, PrinterWorker],
    members: MemberDirectory,
) -> web.Application:
    """The aiohttp application of the local API."""
    app = web.Application(
        client_max_size=config.api.max_body_bytes,
        middlewares=[_errors_and_metrics, _bearer_auth],
    )
    app[CONFIG] = config
    app[DB] = db
    app[OUTBOX] = outbox
    app[CHECKOUT] = checkout
    app[PRINTERS] = printers
    app[MEMBERS] = members
    app[METRICS] = Metrics()

    async def start_metrics(app: web.Application) -> None:
        await app[METRICS].start(app[DB])

    app.on_startup.append(start_metrics)
    app.router.add_post("/v1/sales", post_sale)
    app.router.add_get("/v1/sales/{sale_id}", get_sale)
    app.router.add_post("/v1/sales/{sale_id}/reprint", reprint_sale)
    app.router.add_get("/v1/members/{member_id}", get_member)
    app.router.add_post("/v1/members/{member_id}/tags", post_member_tags)
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/metrics", get_metrics)
    return app
