"""Checkout: a validated sale becomes a receipt, an outbox event and a print job in one commit.

The POS hears back only after that commit (``synchronous=FULL``). The same ``sale_id`` posted
again returns the receipt already issued and queues nothing; a different sale reusing the id
is refused.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.config import AgentConfig, PrinterConfig
from agent.db import Database, Durability
from agent.offers import receipt_offer
from agent.outbox import NewEvent, Outbox, epoch_ms, utc_iso
from agent.qrtoken import issue_token
from agent.sale import Sale, sale_fingerprint
from config.receipt_token import ReceiptClaims, receipt_number, receipt_url


class ReceiptPrinter(Protocol):
    """What checkout needs of a print worker (agent.printing.PrinterWorker)."""

    def offer_handoff(self) -> bool:
        """Whether the job may be committed as 'printing' and handed straight over."""

    def complete_handoff(
        self,
        job_id: int | None,
        sale_id: str,
        body: dict[str, Any],
        receipt_no: str,
        url: str,
        offer: str | None,
    ) -> None:
        """Hand the committed job over (``job_id`` None: the sale did not commit)."""

    def kick(self) -> None:
        """A job was queued."""


SALE_EVENT_KIND = "sale"
SALE_EVENT_VERSION = 1


class SaleConflict(Exception):
    """A different sale was already recorded under this ``sale_id``."""


class UnknownSale(Exception):
    """No sale with this id."""


class NoPrinter(Exception):
    """No printer is configured to print this receipt."""


@dataclass(frozen=True, slots=True)
class PrintJobState:
    """A print job as the POS and the status page see it."""

    job_id: int
    printer: str
    kind: str
    state: str
    copy: bool
    attempts: int
    last_error: str | None

    def as_json(self) -> dict[str, Any]:
        """JSON form for API answers."""
        return {
            "job_id": self.job_id,
            "printer": self.printer,
            "kind": self.kind,
            "state": self.state,
            "copy": self.copy,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class RecordedSale:
    """A committed sale and its receipt."""

    sale_id: str
    receipt_no: str
    receipt_seq: int
    receipt_url: str
    body: dict[str, Any]
    created: bool  # False when this answers a repeated POST
    print_job: PrintJobState | None


class Checkout:
    """Records sales and reprints against the agent database."""

    def __init__(
        self,
        config: AgentConfig,
        db: Database,
        outbox: Outbox,
        key: Ed25519PrivateKey,
        printers: Mapping[str, ReceiptPrinter] | None = None,
    ) -> None:
        self._config = config
        self._db = db
        self._outbox = outbox
        self._key = key
        self._printers = printers or {}
        self._last_receipt_seq: int | None = None

    async def record(self, sale: Sale) -> RecordedSale:
        """Commit the sale with its event and print job, or return the one already recorded."""
        fingerprint = sale_fingerprint(sale)
        existing = await self._existing(sale.sale_id, fingerprint)
        if existing is not None:
            return existing
        try:
            return await self._insert(sale, fingerprint)
        except sqlite3.IntegrityError:
            # The same sale posted twice at once: the other request committed it first.
            existing = await self._existing(sale.sale_id, fingerprint)
            if existing is None:
                raise
            return existing

    async def _insert(self, sale: Sale, fingerprint: str) -> RecordedSale:
        config = self._config.printer_for(sale.register_id)
        worker = self._printers.get(config.name) if config is not None else None
        # Chosen from the replica before the transaction, so it holds no lock longer.
        offer = await receipt_offer(self._db.reader, sale.member_id) if sale.member_id else None
        handoff = worker.offer_handoff() if worker is not None else False
        job_id: int | None = None
        receipt_no = url = ""
        body: dict[str, Any] = {}
        try:
            recorded = await self._commit(sale, fingerprint, config, worker, handoff, offer)
            receipt_no, url, body = recorded.receipt_no, recorded.receipt_url, recorded.body
            job_id = recorded.print_job.job_id if recorded.print_job else None
        finally:
            if worker is not None and handoff:
                worker.complete_handoff(job_id, sale.sale_id, body, receipt_no, url, offer)
        if worker is not None and not handoff:
            worker.kick()
        return recorded

    async def _commit(
        self,
        sale: Sale,
        fingerprint: str,
        printer: PrinterConfig | None,
        worker: ReceiptPrinter | None,
        handoff: bool,
        offer: str | None,
    ) -> RecordedSale:
        now = datetime.now(UTC)
        store_id = self._config.store.id
        # Each statement is a round trip to the database thread: keep them few.
        async with self._db.write(Durability.FULL) as conn:
            seq = await self._next_receipt_seq(conn)
            claims = ReceiptClaims(
                store_id=store_id,
                receipt_seq=seq,
                issued_at=int(sale.occurred_at.timestamp()),
                total=sale.total,
                currency=sale.currency,
                associate_id=sale.staff_id,
            )
            url = receipt_url(self._config.cloud.url, issue_token(claims, self._key))
            receipt_no = receipt_number(store_id, seq)
            body = sale.model_dump(mode="json")
            payload = {**body, "receipt_no": receipt_no, "receipt_seq": seq, "receipt_url": url}
            event_seq, _ = await self._outbox.append_in(
                conn,
                NewEvent(SALE_EVENT_KIND, payload, epoch_ms(sale.occurred_at), SALE_EVENT_VERSION),
            )
            await conn.execute_fetchall(
                "INSERT INTO sales (sale_id, receipt_seq, receipt_no, request_hash, body,"
                " receipt_url, event_seq, created_at, offer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sale.sale_id,
                    seq,
                    receipt_no,
                    fingerprint,
                    json.dumps(body, ensure_ascii=False),
                    url,
                    event_seq,
                    utc_iso(now),
                    offer,
                ),
            )
            job = None
            if printer is not None:
                job = await _insert_job(
                    conn, sale.sale_id, printer.name, "receipt", now, handed_over=handoff
                )
        self._last_receipt_seq = seq
        return RecordedSale(sale.sale_id, receipt_no, seq, url, body, True, job)

    async def _next_receipt_seq(self, conn: aiosqlite.Connection) -> int:
        # Only the agent writes sales, under the write lock: the last number can be cached.
        # It moves on only after a commit, so a refused sale leaves no gap.
        if self._last_receipt_seq is None:
            rows = await conn.execute_fetchall("SELECT coalesce(max(receipt_seq), 0) FROM sales")
            self._last_receipt_seq = int(next(iter(rows))[0])
        return self._last_receipt_seq + 1

    async def _existing(self, sale_id: str, fingerprint: str) -> RecordedSale | None:
        rows = list(
            await self._db.reader.execute_fetchall(
                "SELECT receipt_no, receipt_seq, receipt_url, body, request_hash FROM sales"
                " WHERE sale_id = ?",
                (sale_id,),
            )
        )
        if not rows:
            return None
        row = rows[0]
        if row[4] != fingerprint:
            raise SaleConflict(
                f"sale_id {sale_id} was already used for a different sale (receipt {row[0]})"
            )
        jobs = await jobs_for_sale(self._db.reader, sale_id)
        first = jobs[0] if jobs else None
        return RecordedSale(sale_id, row[0], row[1], row[2], json.loads(row[3]), False, first)

    async def get(self, sale_id: str) -> tuple[RecordedSale, list[PrintJobState]]:
        """The recorded sale and all its print jobs."""
        conn = self._db.reader
        async with conn.execute(
            "SELECT receipt_no, receipt_seq, receipt_url, body FROM sales WHERE sale_id = ?",
            (sale_id,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            raise UnknownSale(sale_id)
        jobs = await jobs_for_sale(conn, sale_id)
        recorded = RecordedSale(
            sale_id, row[0], row[1], row[2], json.loads(row[3]), False, jobs[0] if jobs else None
        )
        return recorded, jobs

    async def reprint(self, sale_id: str, printer_name: str | None = None) -> PrintJobState:
        """Queue a copy of the receipt, marked as a copy."""
        recorded, _ = await self.get(sale_id)
        if printer_name is None:
            printer = self._config.printer_for(str(recorded.body["register_id"]))
        else:
            printer = next((p for p in self._config.printers if p.name == printer_name), None)
        if printer is None:
            raise NoPrinter(
                f"no printer named {printer_name!r}" if printer_name else "no printer configured"
            )
        async with self._db.write(Durability.FULL) as conn:
            job = await _insert_job(
                conn, sale_id, printer.name, "reprint", datetime.now(UTC), copy=True
            )
        worker = self._printers.get(printer.name)
        if worker is not None:
            worker.kick()
        return job


async def _insert_job(
    conn: aiosqlite.Connection,
    sale_id: str,
    printer: str,
    kind: str,
    now: datetime,
    *,
    copy: bool = False,
    handed_over: bool = False,
) -> PrintJobState:
    # A job handed straight to an idle printer is 'printing' from this commit on: if the
    # agent dies before it is sent, the restart prints it as a copy (never twice unmarked).
    state, attempts = ("printing", 1) if handed_over else ("queued", 0)
    stamp = utc_iso(now)
    row = await conn.execute_insert(
        "INSERT INTO print_jobs (sale_id, printer, kind, state, copy, attempts, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (sale_id, printer, kind, state, int(copy), attempts, stamp, stamp),
    )
    assert row is not None
    job_id = int(row[0])
    return PrintJobState(job_id, printer, kind, state, copy, attempts, None)


async def jobs_for_sale(conn: aiosqlite.Connection, sale_id: str) -> list[PrintJobState]:
    """All print jobs of a sale, oldest first."""
    rows = await conn.execute_fetchall(
        "SELECT id, printer, kind, state, copy, attempts, last_error FROM print_jobs"
        " WHERE sale_id = ? ORDER BY id",
        (sale_id,),
    )
    return [PrintJobState(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6]) for r in rows]
