"""Print workers: one per configured printer, sending queued jobs in order, exactly once.

A job is marked ``printing`` (committed) before its first byte leaves. If the outcome is then
uncertain (the connection broke after some bytes, or the agent was killed), the job goes back
to the queue marked as a copy, so a receipt is never printed twice without "COPY" on it. A
printer that is unreachable, offline, out of paper or has its cover open is retried with
capped exponential backoff; nothing is sent to it meanwhile. Status is polled while idle and
logged once when a printer drops and once when it recovers.

The blocking transport (python-escpos sockets, pyserial) runs on one thread per printer.

A ``dnssd://`` printer is looked up by its advertised name before every connection (the
``resolver`` given by the agent; python-zeroconf answers from its cache while the printer's
records are fresh), so a printer that moved to another address or port is followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

from agent.config import AgentConfig, PrinterConfig
from agent.db import Database, DatabaseError, Durability
from agent.outbox import utc_iso
from agent.receipt import (
    PaperProfile,
    Receipt,
    ReceiptLine,
    ReceiptPayment,
    paper_profile,
    render_receipt,
)
from drivers.printer.connection import PrinterConnection, print_job
from drivers.printer.errors import (
    PrinterError,
    PrinterNotReady,
    PrinterUnreachable,
    PrinterWriteError,
)
from drivers.printer.status import PrinterStatus
from drivers.printer.uri import PrinterURI

log = logging.getLogger(__name__)

T = TypeVar("T")

# DNS-SD service name -> (host, port) now; raises when nothing answers in time.
Resolver = Callable[[str], Awaitable[tuple[str, int]]]

IDLE_POLL_S = 30.0
BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 30.0
HEALTH_SAVE_S = 60.0


def receipt_from_sale(
    config: AgentConfig,
    body: dict[str, Any],
    receipt_no: str,
    receipt_url: str,
    offer: str | None = None,
) -> Receipt:
    """The printable receipt for a recorded sale body, with the footer offer chosen for it."""
    store = config.store
    return Receipt(
        store_name=store.name or store.id,
        store_id=store.id,
        address_lines=store.address,
        receipt_no=receipt_no,
        occurred_at=datetime.fromisoformat(body["occurred_at"]),
        tz=store.timezone,
        register_id=body["register_id"],
        staff_id=body.get("staff_id"),
        member_id=body.get("member_id"),
        lines=tuple(
            ReceiptLine(
                name=line["name"],
                qty=line["qty"],
                unit_price=line["unit_price"],
                discount=line.get("discount", 0),
                sku=line.get("sku"),
                gtin=line.get("gtin"),
            )
            for line in body["lines"]
        ),
        payments=tuple(ReceiptPayment(p["method"], p["amount"]) for p in body["payments"]),
        total=body["total"],
        currency=body["currency"],
        qr_url=receipt_url,
        offer=offer,
        footer=config.receipt.footer,
    )


# Print jobs still to do (or given up on), counted per printer and state.
# A printer's last known state, for `storelink-agent status` (another process).
PRINTER_STATUS_UPSERT = (
    "INSERT INTO printer_status (name, available, detail, checked_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (name) DO UPDATE SET available = excluded.available,"
    " detail = excluded.detail, checked_at = excluded.checked_at"
)
PENDING_JOBS_SQL = (
    "SELECT printer, state, count(*) FROM print_jobs"
    " WHERE state IN ('queued', 'printing', 'failed') GROUP BY printer, state"
)


def jobs_by_printer(rows: Iterable[Sequence[Any]]) -> dict[str, dict[str, int]]:
    """``PENDING_JOBS_SQL`` rows as {printer: {state: count}}."""
    jobs: dict[str, dict[str, int]] = {}
    for printer, state, count in rows:
        jobs.setdefault(printer, {})[state] = count
    return jobs


def profile_of(printer: PrinterConfig) -> PaperProfile:
    """The paper profile of a configured printer, with its overrides."""
    return paper_profile(printer.profile, gb18030=printer.gb18030, native_qr=printer.native_qr)


@dataclass(frozen=True, slots=True)
class _Job:
    id: int
    sale_id: str
    kind: str
    copy: bool
    receipt_no: str
    receipt_url: str
    body: dict[str, Any]
    offer: str | None


class PrinterWorker:
    """Sends one printer's queued jobs; start with ``async with``."""

    def __init__(
        self,
        config: AgentConfig,
        printer: PrinterConfig,
        db: Database,
        resolver: Resolver | None = None,
    ) -> None:
        self._config = config
        self._resolver = resolver
        self._resolved: PrinterURI | None = None
        self._printer = printer
        self._db = db
        self._profile = profile_of(printer)
        self._uri = printer.parsed_uri
        self._font = config.receipt.cjk_font
        self._wake = asyncio.Event()
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"printer-{printer.name}")
        # Hand-off: while the printer is idle and healthy, a new sale's job is committed as
        # 'printing' in the sale's own transaction and passed here, skipping a second commit.
        self._idle = False
        self._handoff_pending = False
        self._handed: deque[_Job] = deque()
        self._task: asyncio.Task[None] | None = None
        self._backoff = BACKOFF_START_S
        self.available: bool | None = None
        self.detail = "not checked yet"
        self._health_saved_at = -HEALTH_SAVE_S

    @property
    def name(self) -> str:
        """The printer's configured name."""
        return self._printer.name

    async def __aenter__(self) -> PrinterWorker:
        self._task = asyncio.create_task(self._run(), name=f"printer-{self.name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # A send in flight finishes on its thread (bounded by the printer timeout).
        await asyncio.to_thread(self._thread.shutdown, wait=True)

    def kick(self) -> None:
        """Look for work now (a job was queued)."""
        self._idle = False
        self._wake.set()

    def offer_handoff(self) -> bool:
        """Whether the next sale's job may be committed as 'printing' and handed over."""
        if self._idle and not self._handoff_pending and self.available:
            self._handoff_pending = True
            self._idle = False
            return True
        return False

    def complete_handoff(
        self,
        job_id: int | None,
        sale_id: str,
        body: dict[str, Any],
        receipt_no: str,
        url: str,
        offer: str | None,
    ) -> None:
        """The sale committed with its job already 'printing' (or failed: ``job_id`` None)."""
        self._handoff_pending = False
        if job_id is not None:
            job = _Job(job_id, sale_id, "receipt", False, receipt_no, url, body, offer)
            self._handed.append(job)
        self._wake.set()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _run(self) -> None:
        while True:
            # Cleared before the step, so a kick that arrives during it is not lost.
            self._wake.clear()
            try:
                delay = await self._step()
            except DatabaseError:
                log.exception("printer %s: database error; retrying", self.name)
                delay = BACKOFF_CAP_S
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)

    async def _step(self) -> float:
        """Print the next job if any; return how long to wait before the next step."""
        if self._handoff_pending:
            return IDLE_POLL_S  # the sale's commit wakes us
        job: _Job | None
        if self._handed:
            job = self._handed.popleft()
        else:
            job = await self._claim_next_job()
        if job is None:
            self._idle = True
            await self._poll_status()
            return IDLE_POLL_S
        # Rendered on the printer's thread, after the sale committed: a render thread beside
        # the commit only made both wait for the GIL (measured: worse for large receipts).
        try:
            data = await self._call(self._render, job)
        except Exception as err:  # a bug or bad stored data: do not retry forever
            log.exception("printer %s: cannot render job %d", self.name, job.id)
            await self._finish(job.id, "failed", f"render error: {err}")
            return 0
        try:
            uri = await self._target()
            status = await self._call(print_job, uri, data, self._printer.timeout_s)
        except PrinterWriteError as err:
            uncertain = err.bytes_sent > 0
            self._idle = False
            await self._requeue(job.id, str(err), copy=uncertain)
            await self._set_health(False, f"connection lost while printing: {err}")
            return self._next_backoff()
        except PrinterError as err:
            detail = err.status.describe() if isinstance(err, PrinterNotReady) else str(err)
            self._idle = False
            await self._requeue(job.id, detail, copy=False)
            await self._set_health(False, detail)
            return self._next_backoff()
        await self._finish(job.id, "done", None)
        await self._set_health(True, status.describe() if status is not None else "online")
        self._backoff = BACKOFF_START_S
        return 0

    def _render(self, job: _Job) -> bytes:
        receipt = receipt_from_sale(
            self._config, job.body, job.receipt_no, job.receipt_url, job.offer
        )
        return render_receipt(receipt, self._profile, copy=job.copy, cjk_font=self._font)

    def _next_backoff(self) -> float:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_CAP_S)
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not crypto

    async def _claim_next_job(self) -> _Job | None:
        """Take the oldest pending job and commit that it is being sent, in one transaction.

        A job found still 'printing' was interrupted after it started (connection lost, agent
        killed): its outcome is unknown, so from now on it prints as a copy. Picking and
        marking in one write transaction means no read can see a job that is already done.
        """
        now = utc_iso(datetime.now(UTC))
        # FULL like the sale itself: no synchronous-mode switch between the two on this path.
        async with self._db.write(Durability.FULL) as conn:
            claimed = list(
                await conn.execute_fetchall(
                    "UPDATE print_jobs SET"
                    " copy = CASE WHEN state = 'printing' THEN 1 ELSE copy END,"
                    " state = 'printing', attempts = attempts + 1, updated_at = ?"
                    " WHERE id = (SELECT id FROM print_jobs WHERE printer = ?"
                    " AND state IN ('queued', 'printing') ORDER BY id LIMIT 1)"
                    " RETURNING id, sale_id, kind, copy",
                    (now, self.name),
                )
            )
            if not claimed:
                return None
            job_id, sale_id, kind, copy = claimed[0]
            rows = list(
                await conn.execute_fetchall(
                    "SELECT receipt_no, receipt_url, body, offer FROM sales WHERE sale_id = ?",
                    (sale_id,),
                )
            )
        receipt_no, url, body, offer = rows[0]
        return _Job(job_id, sale_id, kind, bool(copy), receipt_no, url, json.loads(body), offer)

    async def _requeue(self, job_id: int, error: str, *, copy: bool) -> None:
        now = utc_iso(datetime.now(UTC))
        async with self._db.write(Durability.FULL) as conn:
            await conn.execute_fetchall(
                "UPDATE print_jobs SET state = 'queued', copy = max(copy, ?), last_error = ?,"
                " updated_at = ? WHERE id = ?",
                (int(copy), error, now, job_id),
            )

    async def _finish(self, job_id: int, state: str, error: str | None) -> None:
        now = utc_iso(datetime.now(UTC))
        async with self._db.write(Durability.FULL) as conn:
            await conn.execute_fetchall(
                "UPDATE print_jobs SET state = ?, last_error = ?, updated_at = ?,"
                " printed_at = CASE WHEN ? = 'done' THEN ? END WHERE id = ?",
                (state, error, now, state, now, job_id),
            )

    async def _target(self) -> PrinterURI:
        """Where to connect now: the configured URI, or a dnssd printer's current address."""
        if self._uri.scheme != "dnssd":
            return self._uri
        name = self._uri.service_name
        if self._resolver is None:
            raise PrinterUnreachable(f"cannot look up {name!r}: mDNS is not running")
        try:
            host, port = await self._resolver(name)
        except Exception as err:  # the resolver's errors: NotFound, OSError, zeroconf's own
            raise PrinterUnreachable(f"printer {self._uri} not found: {err}") from err
        uri = self._uri.at(host, port)
        if uri != self._resolved:
            log.info("printer %s is at %s (advertised as %r)", self.name, uri, name)
            self._resolved = uri
        return uri

    async def _poll_status(self) -> None:
        try:
            uri = await self._target()
            status = await self._call(self._query_status, uri)
        except PrinterError as err:
            await self._set_health(False, str(err))
            return
        if status is None:
            await self._set_health(True, "online (status not readable on this transport)")
        else:
            await self._set_health(status.ready, status.describe())

    def _query_status(self, uri: PrinterURI) -> PrinterStatus | None:
        with PrinterConnection(uri, self._printer.timeout_s) as conn:
            return conn.query_status()

    async def _set_health(self, available: bool, detail: str) -> None:
        changed = (available, detail) != (self.available, self.detail)
        if available != self.available:
            if available:
                log.info("printer %s is available: %s", self.name, detail)
            elif self.available is None:
                log.warning("printer %s is not available: %s", self.name, detail)
            else:
                log.warning("printer %s dropped: %s", self.name, detail)
        else:
            log.debug("printer %s: %s", self.name, detail)
        self.available = available
        self.detail = detail
        loop_now = asyncio.get_running_loop().time()
        if changed or loop_now - self._health_saved_at > HEALTH_SAVE_S:
            # Persisted so `storelink-agent status` (another process) can show it.
            self._health_saved_at = loop_now
            async with self._db.write(Durability.FULL) as conn:
                await conn.execute(
                    PRINTER_STATUS_UPSERT,
                    (self.name, int(available), detail, utc_iso(datetime.now(UTC))),
                )
