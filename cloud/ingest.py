"""Ingest: batches of store events become rows, each event exactly once.

``POST /v1/stores/{store_id}/events`` (config/schemas/sync-protocol.md): every envelope is
validated on its own against envelope.v1.json and its kind's payload schema; valid events are
inserted into ``events`` with ``ON CONFLICT DO NOTHING`` on the primary key (store_id,
event_id), and only the rows that were new take effect, in the same transaction: a sale
becomes sales/sale_lines/sale_payments rows (and sale_line_epcs), a ``member.tags`` event goes
to :func:`cloud.tags.apply_tag_event`, device telemetry (``tryon``, ``wifi.window``,
``footfall.window``; :mod:`cloud.telemetry`) becomes tryons/wifi_windows/footfall_windows rows.
A repeated batch finds every row present, changes nothing and gets the same answer.

Validation uses msgspec Structs that mirror the JSON Schemas field by field (sale.v1.json,
member-tags.v1.json, envelope.v1.json, with their bounds): msgspec is already a dependency,
decodes and validates a 5,000-event batch about 2.5 times faster than pydantic, and keeps each
payload's raw bytes, which are stored as sent instead of being encoded again.

On SQLite the rows are written through the driver, in multi-row INSERTs built from the
statement SQLAlchemy compiles for each table, inside a ``BEGIN IMMEDIATE`` transaction;
skipping SQLAlchemy's per-row parameter processing more than doubles the insert rate. Which
events were new: when every row went in, all of them; otherwise those with a rowid above the
table's largest before the insert (SQLite gives a new row the largest rowid + 1, and the write
lock keeps every other writer out). Other databases (PostgreSQL) take the portable path: Core
executemany with ``RETURNING`` to learn which rows were new.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

import msgspec
from aiohttp import web
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloud import appkeys, auth, db, telemetry
from cloud.changes import link_member_to_store
from cloud.schema import (
    events,
    footfall_windows,
    receipt_claims,
    rejected_events,
    sale_line_epcs,
    sale_lines,
    sale_payments,
    sales,
    tryons,
    wifi_windows,
)
from cloud.tags import apply_tag_event
from cloud.telemetry import (
    TelemetryPayload,
    TryonPayload,
    WifiWindowPayload,
    footfall_row,
    tryon_row,
    wifi_row,
)

log = logging.getLogger(__name__)

MAX_EVENTS = 5000
MAX_INT = 2**63 - 1  # BIGINT
MAX_INT32 = 2**31 - 1  # INTEGER columns (qty, v)
# How many batches may be in flight at once, and how long one waits for a turn before the
# store is told to come back later (503 + Retry-After).
INGEST_SLOTS = 4
SLOT_WAIT_S = 10.0
RETRY_AFTER_S = 2
_MAX_REASON = 1000
_TIME_MEMO = 2 * MAX_EVENTS
# Rows per INSERT statement on SQLite: one statement per row costs a third more CPU, and the
# gain levels off past a few dozen rows (well under SQLite's 32,766 bound parameters).
ROWS_PER_INSERT = 100

INGEST_GATE = web.AppKey("ingest_gate", asyncio.Semaphore)
EVENTS_ROUTE = "/v1/stores/{store_id}/events"


# -- validation: msgspec mirrors of the JSON Schemas ---------------------------------------

Text32 = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Text64 = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Amount = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
Time = Annotated[datetime, msgspec.Meta(tz=True)]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """Unknown fields are errors. ``gc=False``: these hold no reference cycles, and leaving
    thousands per batch out of the garbage collector's passes keeps them cheap."""


# In the patterns, "\Z": Python's "$" also matches before a final newline, JSON Schema's not.
class Envelope(_Strict, frozen=True):
    """envelope.v1.json; the payload stays raw until its kind and version are known."""

    id: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z"
        ),
    ]
    store_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,32}\Z")]
    seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_INT)]
    kind: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_.]{0,63}\Z")]
    v: Annotated[int, msgspec.Meta(ge=1, le=MAX_INT32)]
    at: Time
    payload: msgspec.Raw


class SaleLine(_Strict, frozen=True):
    """One line of sale.v1.json."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    qty: Annotated[int, msgspec.Meta(ge=1, le=MAX_INT32)]
    unit_price: Amount
    discount: Amount
    gtin: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{8,14}\Z")] | None = None
    sku: Text64 | None = None
    epc: Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Fa-f]{8,64}\Z")] | None = None
    # The garments' EPCs, when the POS reads tags at the till (kept upper-case; try-on matching).
    epcs: list[Annotated[str, msgspec.Meta(pattern=r"^(?:[0-9A-Fa-f]{2}){4,32}\Z")]] = (
        msgspec.field(default_factory=list)
    )

    def __post_init__(self) -> None:
        if len(self.epcs) > self.qty:
            raise ValueError(f"epcs: {len(self.epcs)} EPCs on a line of qty {self.qty}")


class SalePayment(_Strict, frozen=True):
    """One payment of sale.v1.json."""

    method: Text32
    amount: Amount


class SalePayload(_Strict, frozen=True):
    """sale.v1.json."""

    # "format": "uuid": the RFC 9562 text form, any case (stored in lower case).
    sale_id: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
        ),
    ]
    register_id: Text32
    lines: Annotated[list[SaleLine], msgspec.Meta(min_length=1)]
    payments: Annotated[list[SalePayment], msgspec.Meta(min_length=1)]
    total: Amount
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z")]
    occurred_at: Time
    receipt_no: Annotated[str, msgspec.Meta(max_length=64)]
    receipt_seq: Annotated[int, msgspec.Meta(ge=1, le=MAX_INT)]
    receipt_url: str
    staff_id: Text32 | None = None
    member_id: Text64 | None = None


class TagOperation(_Strict, frozen=True):
    """One operation of member-tags.v1.json."""

    op_id: Text64
    op: Literal["add", "remove"]
    tag: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    at: Time


class MemberTagsPayload(_Strict, frozen=True):
    """member-tags.v1.json."""

    member_id: Text64
    ops: Annotated[list[TagOperation], msgspec.Meta(min_length=1, max_length=50)]
    staff_id: Text32 | None = None


Payload = SalePayload | MemberTagsPayload | TelemetryPayload

# (kind, v) -> decoder of its payload. A new event kind adds a line here and an applier below.
PAYLOAD_DECODERS: dict[tuple[str, int], msgspec.json.Decoder[Any]] = {
    ("sale", 1): msgspec.json.Decoder(SalePayload),
    ("member.tags", 1): msgspec.json.Decoder(MemberTagsPayload),
    **telemetry.DECODERS,
}
_ENVELOPE = msgspec.json.Decoder(Envelope)


class _Batch(msgspec.Struct, gc=False):
    events: list[msgspec.Raw]


class _Envelopes(msgspec.Struct, gc=False):
    events: list[Envelope]


_BATCH = msgspec.json.Decoder(_Batch)
_ENVELOPES = msgspec.json.Decoder(_Envelopes)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid event."""

    envelope: Envelope
    payload: Payload


@dataclass(frozen=True, slots=True)
class Rejected:
    """An invalid event: ``event_id`` as sent (None if it had none) and why."""

    event_id: str | None
    reason: str
    key: str  # rejected_events.event_id: the id, or a digest of the bytes when unusable


@dataclass(slots=True)
class Batch:
    """A validated batch: valid events (first of each id) and rejections, in batch order."""

    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


_AT = re.compile(r"(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)
_FIELD_PROBLEM = re.compile(
    r"Object (?P<what>missing required|contains unknown) field `(?P<name>.*)`"
)


def _reason(err: msgspec.ValidationError, prefix: str) -> str:
    """msgspec's message reworded as ``path: problem``, e.g. ``payload.lines[0].qty: ...``."""
    match = _AT.fullmatch(str(err))
    assert match is not None  # the pattern matches any text
    message, path = match["message"], match["path"] or ""
    problem = _FIELD_PROBLEM.fullmatch(message)
    if problem is not None:
        path += f".{problem['name']}"
        message = "missing" if problem["what"] == "missing required" else "unknown field"
    where = (prefix + path).lstrip(".") or "event"
    return f"{where}: {message}"[:_MAX_REASON]


def _rejection(raw: bytes, event_id: Any, reason: str) -> Rejected:
    """A rejection keyed by the event's id, or by its bytes when the id is unusable."""
    if isinstance(event_id, str) and 0 < len(event_id) <= 64:
        return Rejected(event_id, reason, event_id)
    digest = hashlib.sha256(raw).hexdigest()
    return Rejected(
        event_id if isinstance(event_id, str) else None, reason, f"sha256:{digest[:57]}"
    )


def _raw_id(raw: bytes) -> Any:
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    return value.get("id") if isinstance(value, dict) else None


def _check_payload(envelope: Envelope, store_id: str) -> Accepted | Rejected:
    """The rest of the checks once the envelope itself decoded (so its id is well-formed)."""
    if envelope.store_id != store_id:
        reason = f"store_id: {envelope.store_id!r} is not this store ({store_id})"
        return Rejected(envelope.id, reason, envelope.id)
    decoder = PAYLOAD_DECODERS.get((envelope.kind, envelope.v))
    if decoder is None:
        reason = f"kind: unknown kind/version {envelope.kind!r} v{envelope.v}"
        return Rejected(envelope.id, reason, envelope.id)
    try:
        payload = decoder.decode(envelope.payload)
    except msgspec.ValidationError as err:
        return Rejected(envelope.id, _reason(err, "payload"), envelope.id)
    return Accepted(envelope, payload)


def validate_event(raw: bytes, store_id: str) -> Accepted | Rejected:
    """Check one envelope and its payload for the store whose path it was posted to."""
    try:
        envelope = _ENVELOPE.decode(raw)
    except msgspec.ValidationError as err:
        return _rejection(raw, _raw_id(raw), _reason(err, ""))
    return _check_payload(envelope, store_id)


def _too_many(count: int) -> None:
    if count > MAX_EVENTS:
        raise auth.json_error(413, "too_many_events", f"at most {MAX_EVENTS} events per batch")


def _outcomes(body: bytes, store_id: str) -> list[Accepted | Rejected]:
    try:
        # Usually every envelope is well-formed: one decoder call for the whole batch is the
        # fast way through. Only when one is not does each event get decoded on its own.
        envelopes = _ENVELOPES.decode(body).events
    except msgspec.ValidationError:
        pass
    else:
        _too_many(len(envelopes))
        return [_check_payload(envelope, store_id) for envelope in envelopes]
    try:
        raws = _BATCH.decode(body).events
    except msgspec.ValidationError as err:
        raise auth.json_error(400, "bad_batch", f'expected {{"events": [...]}}: {err}') from err
    _too_many(len(raws))
    return [validate_event(bytes(raw), store_id) for raw in raws]


def parse_batch(body: bytes, store_id: str) -> Batch:
    """Split a request body into valid and rejected events; 400/413 if it is not a batch."""
    batch = Batch()
    seen: set[str] = set()
    try:
        outcomes = _outcomes(body, store_id)
    except msgspec.DecodeError as err:
        raise auth.json_error(400, "bad_batch", f"body is not JSON: {err}") from err
    for outcome in outcomes:
        if isinstance(outcome, Rejected):
            batch.rejected.append(outcome)
        elif outcome.envelope.id not in seen:
            seen.add(outcome.envelope.id)
            batch.accepted.append(outcome)
    return batch


# -- writing -------------------------------------------------------------------------------


Rows = Sequence[tuple[Any, ...]]


class Writer(Protocol):
    """How rows get into the database: ``INSERT ... ON CONFLICT DO NOTHING`` of tuples given
    in the table's column order."""

    async def insert_new_events(self, conn: AsyncConnection, store_id: str, rows: Rows) -> set[str]:
        """Insert event rows; return the ids that were not in the table before."""
        ...

    async def insert_rows(self, conn: AsyncConnection, table: Table, rows: Rows) -> int:
        """Insert rows; return how many were new."""
        ...

    def time(self, moment: datetime) -> Any:
        """A UTC time as this writer's rows carry it."""
        ...


class PortableWriter:
    """SQLAlchemy Core executemany with RETURNING: right on any database, with any writers."""

    def time(self, moment: datetime) -> Any:
        """Times stay datetimes: SQLAlchemy converts them."""
        return moment

    async def insert_new_events(self, conn: AsyncConnection, store_id: str, rows: Rows) -> set[str]:
        """Insert event rows; the new ones come back through RETURNING."""
        if not rows:
            return set()
        stmt = db.insert_for(conn, events).on_conflict_do_nothing().returning(events.c.event_id)
        return set((await conn.scalars(stmt, _as_dicts(events, rows))).all())

    async def insert_rows(self, conn: AsyncConnection, table: Table, rows: Rows) -> int:
        """Insert rows; count the new ones through RETURNING."""
        if not rows:
            return 0
        first_key = table.primary_key.columns.values()[0]
        stmt = db.insert_for(conn, table).on_conflict_do_nothing().returning(first_key)
        return len((await conn.execute(stmt, _as_dicts(table, rows))).all())


def _as_dicts(table: Table, rows: Rows) -> list[dict[str, Any]]:
    keys = [column.key for column in table.c]
    return [dict(zip(keys, row, strict=True)) for row in rows]


class SqliteWriter:
    """The driver's executemany under SQLite's write lock (see the module docstring)."""

    def __init__(self) -> None:
        # An event's time and its sale's are usually the same instant: format it once.
        self._times: dict[datetime, str] = {}

    def time(self, moment: datetime) -> Any:
        """A UTC time as SQLAlchemy's SQLite DATETIME stores it: ``2026-11-28 10:15:00.123000``.

        Rows bypass SQLAlchemy's type processing, so they must carry the same text it writes
        (tests compare the two); slicing isoformat is several times faster than its formatter.
        """
        text = self._times.get(moment)
        if text is None:
            if len(self._times) >= _TIME_MEMO:
                self._times.clear()
            text = self._times[moment] = moment.isoformat(" ", "microseconds")[:26]
        return text

    async def insert_new_events(self, conn: AsyncConnection, store_id: str, rows: Rows) -> set[str]:
        """Insert all, then tell the new rows by their rowid (see the module docstring)."""
        before = await conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM events")
        last_rowid = before.scalar_one()
        inserted = await self.insert_rows(conn, events, rows)
        if inserted == len(rows):
            return {row[1] for row in rows}
        new = await conn.exec_driver_sql(
            "SELECT event_id FROM events WHERE rowid > ?", (last_rowid,)
        )
        return {event_id for (event_id,) in new}

    async def insert_rows(self, conn: AsyncConnection, table: Table, rows: Rows) -> int:
        """Multi-row INSERTs of ROWS_PER_INSERT rows each, then one for the rest."""
        full = len(rows) - len(rows) % ROWS_PER_INSERT
        inserted = 0
        if full:
            groups = [
                tuple(value for row in rows[start : start + ROWS_PER_INSERT] for value in row)
                for start in range(0, full, ROWS_PER_INSERT)
            ]
            sql = _sqlite_insert(conn.dialect, table, ROWS_PER_INSERT)
            inserted += (await conn.exec_driver_sql(sql, groups)).rowcount
        if full < len(rows):
            rest = tuple(value for row in rows[full:] for value in row)
            sql = _sqlite_insert(conn.dialect, table, len(rows) - full)
            inserted += (await conn.exec_driver_sql(sql, rest)).rowcount
        return inserted


@functools.cache
def _sqlite_insert(dialect: Dialect, table: Table, rows: int) -> str:
    """``INSERT ... VALUES (?, ...), ... ON CONFLICT DO NOTHING`` for that many rows."""
    stmt = db.insert_for_dialect("sqlite", table).on_conflict_do_nothing()
    compiled = stmt.compile(dialect=dialect)
    # The driver gets plain values, so the placeholders must be in column order.
    assert list(compiled.positiontup or ()) == [c.key for c in table.c], compiled.positiontup
    head, _, tail = str(compiled).partition(" VALUES ")
    group, conflict = tail[: tail.index(")") + 1], tail[tail.index(")") + 1 :]
    return f"{head} VALUES {', '.join([group] * rows)}{conflict}"


def writer_for(dialect: Dialect) -> Writer:
    """The fastest correct writer for the database."""
    return SqliteWriter() if dialect.name == "sqlite" else PortableWriter()


def _event_rows(
    writer: Writer, store_id: str, batch: Sequence[Accepted], received_at: datetime
) -> Rows:
    time = writer.time
    received = time(received_at)
    return [
        (
            store_id,
            a.envelope.id,
            a.envelope.seq,
            a.envelope.kind,
            a.envelope.v,
            time(a.envelope.at.astimezone(UTC)),
            bytes(a.envelope.payload).decode("utf-8"),
            received,
        )
        for a in batch
    ]


async def _apply_sales(
    conn: AsyncConnection,
    writer: Writer,
    store_id: str,
    new_sales: list[tuple[Envelope, SalePayload]],
) -> None:
    """Sale events that were new become sale rows, lines and payments; link their members."""
    if not new_sales:
        return
    # A receipt claimed on the web before its sale synced: the sale arrives without member.
    # A range, not an IN list: claims are few, and 5,000 bound parameters cost more to compile.
    seqs = [sale.receipt_seq for _, sale in new_sales]
    claims = await conn.execute(
        select(receipt_claims.c.receipt_seq, receipt_claims.c.member_id).where(
            receipt_claims.c.store_id == store_id,
            receipt_claims.c.receipt_seq.between(min(seqs), max(seqs)),
        )
    )
    claimed: dict[int, str] = dict(claims.all())
    time = writer.time
    sale_rows: list[tuple[Any, ...]] = []
    line_rows: list[tuple[Any, ...]] = []
    payment_rows: list[tuple[Any, ...]] = []
    epc_rows: list[tuple[Any, ...]] = []
    latest: dict[str, datetime] = {}
    for envelope, sale in new_sales:
        sale_id = sale.sale_id.lower()
        member = sale.member_id or claimed.get(sale.receipt_seq)
        sale_rows.append(
            (
                store_id,
                sale_id,
                envelope.id,
                sale.receipt_no,
                sale.receipt_seq,
                sale.register_id,
                sale.staff_id,
                member,
                sale.total,
                sale.currency,
                time(sale.occurred_at.astimezone(UTC)),
                sale.receipt_url,
            )
        )
        line_rows += [
            (
                store_id,
                sale_id,
                n,
                li.gtin,
                li.sku,
                li.epc,
                li.name,
                li.qty,
                li.unit_price,
                li.discount,
            )
            for n, li in enumerate(sale.lines)
        ]
        payment_rows += [
            (store_id, sale_id, n, p.method, p.amount) for n, p in enumerate(sale.payments)
        ]
        epc_rows += [
            (store_id, epc, sale_id, n) for n, li in enumerate(sale.lines) for epc in _line_epcs(li)
        ]
        if member is not None and (member not in latest or latest[member] < sale.occurred_at):
            latest[member] = sale.occurred_at
    inserted = await writer.insert_rows(conn, sales, sale_rows)
    if inserted != len(sale_rows):
        # Another event already recorded this sale_id or receipt number: the first one stands,
        # and this event's lines must not be added to the other sale.
        mine = set(
            (
                await conn.scalars(
                    select(sales.c.sale_id).where(
                        sales.c.store_id == store_id,
                        sales.c.event_id.in_([e.id for e, _ in new_sales]),
                    )
                )
            ).all()
        )
        log.warning(
            "store %s: %d sale events repeat a sale_id or receipt_seq already recorded; skipped",
            store_id,
            len(sale_rows) - len(mine),
        )
        line_rows = [row for row in line_rows if row[1] in mine]
        payment_rows = [row for row in payment_rows if row[1] in mine]
        epc_rows = [row for row in epc_rows if row[2] in mine]
    await writer.insert_rows(conn, sale_lines, line_rows)
    await writer.insert_rows(conn, sale_payments, payment_rows)
    await writer.insert_rows(conn, sale_line_epcs, epc_rows)
    for member_id, at in latest.items():
        await link_member_to_store(conn, member_id, store_id, at)


def _line_epcs(line: SaleLine) -> list[str]:
    """A line's EPCs, upper-case, once each: its ``epcs`` and its single ``epc``."""
    found = [epc.upper() for epc in line.epcs]
    if line.epc is not None:
        found.append(line.epc.upper())
    return list(dict.fromkeys(found))


async def _apply_telemetry(
    conn: AsyncConnection,
    writer: Writer,
    store_id: str,
    new_items: list[tuple[Envelope, TelemetryPayload]],
) -> None:
    """New try-on and window events become rows; a repeated session or window adds nothing."""
    if not new_items:
        return
    time = writer.time
    by_table: dict[Table, list[tuple[Any, ...]]] = {
        tryons: [],
        wifi_windows: [],
        footfall_windows: [],
    }
    for envelope, payload in new_items:
        if isinstance(payload, TryonPayload):
            by_table[tryons].append(tryon_row(store_id, envelope.id, payload, time))
        elif isinstance(payload, WifiWindowPayload):
            by_table[wifi_windows].append(wifi_row(store_id, envelope.id, payload, time))
        else:
            by_table[footfall_windows].append(footfall_row(store_id, envelope.id, payload, time))
    for table, rows in by_table.items():
        inserted = await writer.insert_rows(conn, table, rows)
        if inserted != len(rows):
            # The event is new but its session or window is not (the agent sent it again under
            # another id): the first one stands, as for sales.
            log.info(
                "store %s: %d %s rows repeat a session or window already recorded; skipped",
                store_id,
                len(rows) - inserted,
                table.name,
            )


async def _apply_tag_events(
    conn: AsyncConnection, store_id: str, new_tags: list[tuple[Envelope, MemberTagsPayload]]
) -> list[Rejected]:
    """Apply member.tags events; one the domain refuses is taken back and rejected."""
    if not new_tags:
        return []
    refused = []
    for envelope, payload in new_tags:
        savepoint = await conn.begin_nested()
        try:
            await apply_tag_event(conn, store_id, msgspec.to_builtins(payload))
        except ValueError as err:
            await savepoint.rollback()
            await conn.execute(
                events.delete().where(
                    events.c.store_id == store_id, events.c.event_id == envelope.id
                )
            )
            refused.append(Rejected(envelope.id, str(err)[:_MAX_REASON], envelope.id))
        else:
            await savepoint.commit()
    return refused


async def _record_rejections(
    conn: AsyncConnection, store_id: str, rejected: Sequence[Rejected], received_at: datetime
) -> None:
    if not rejected:
        return
    await conn.execute(
        db.insert_for(conn, rejected_events).on_conflict_do_nothing(),
        [
            {
                "store_id": store_id,
                "event_id": r.key,
                "reason": r.reason,
                "received_at": received_at,
            }
            for r in rejected
        ],
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a batch did: ids now stored, ids newly stored by kind, rejections."""

    stored: list[str]
    new_by_kind: dict[str, int]
    rejected: list[Rejected]


async def store_batch(
    engine: AsyncEngine,
    store_id: str,
    batch: Batch,
    writer: Writer | None = None,
    *,
    nonce: str | None = None,
) -> Outcome:
    """Insert a validated batch in one transaction and apply the events that were new.

    ``nonce``: the request signature's, recorded in the same transaction (401 on a replay).
    """
    writer = writer or writer_for(engine.dialect)
    received_at = db.utc_now()
    async with db.begin_write(engine) as conn:
        if nonce is not None:
            await auth.record_nonce(conn, store_id, nonce)
        rows = _event_rows(writer, store_id, batch.accepted, received_at)
        new_ids = await writer.insert_new_events(conn, store_id, rows)
        new_sales = []
        new_tags = []
        new_telemetry: list[tuple[Envelope, TelemetryPayload]] = []
        new_by_kind: dict[str, int] = {}
        for item in batch.accepted:
            if item.envelope.id not in new_ids:
                continue
            kind = item.envelope.kind
            new_by_kind[kind] = new_by_kind.get(kind, 0) + 1
            if isinstance(item.payload, SalePayload):
                new_sales.append((item.envelope, item.payload))
            elif isinstance(item.payload, MemberTagsPayload):
                new_tags.append((item.envelope, item.payload))
            else:
                new_telemetry.append((item.envelope, item.payload))
        await _apply_sales(conn, writer, store_id, new_sales)
        await _apply_telemetry(conn, writer, store_id, new_telemetry)
        refused = await _apply_tag_events(conn, store_id, new_tags)
        rejected = batch.rejected + refused
        await _record_rejections(conn, store_id, rejected, received_at)
    refused_ids = {r.event_id for r in refused}
    stored = [a.envelope.id for a in batch.accepted if a.envelope.id not in refused_ids]
    return Outcome(stored, new_by_kind, rejected)


# -- HTTP ----------------------------------------------------------------------------------


def _busy(message: str) -> web.HTTPException:
    return auth.json_error(503, "busy", message, {"Retry-After": str(RETRY_AFTER_S)})


@asynccontextmanager
async def _ingest_turn(app: web.Application) -> AsyncIterator[None]:
    gate = app[INGEST_GATE]
    try:
        await asyncio.wait_for(gate.acquire(), SLOT_WAIT_S)
    except TimeoutError as err:
        raise _busy("the cloud is busy ingesting; retry later") from err
    try:
        yield
    finally:
        gate.release()


async def _post_events(request: web.Request) -> web.Response:
    """``POST /v1/stores/{store_id}/events``."""
    store_id = auth.verified_store_id(request)
    batch = parse_batch(await auth.read_body(request), store_id)
    async with _ingest_turn(request.app):
        try:
            outcome = await store_batch(
                request.app[appkeys.ENGINE],
                store_id,
                batch,
                nonce=request[appkeys.SIGNATURE_NONCE],
            )
        except (SQLAlchemyError, db.DatabaseBusy) as err:
            if db.is_overloaded(err):
                raise _busy("the database is busy; retry later") from err
            raise
    metrics = request.app[appkeys.METRICS]
    for kind, count in outcome.new_by_kind.items():
        metrics.events_ingested.labels(kind).inc(count)
    if outcome.rejected:
        metrics.events_rejected.inc(len(outcome.rejected))
        log.info("store %s: %d events rejected", store_id, len(outcome.rejected))
    body = {
        "epoch": request.app[appkeys.EPOCH],
        "stored": outcome.stored,
        "rejected": [{"id": r.event_id, "reason": r.reason} for r in outcome.rejected],
    }
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


async def _get_sync_state(request: web.Request) -> web.Response:
    """``GET /v1/stores/{store_id}/sync-state``: the highest seq the cloud holds."""
    store_id = auth.verified_store_id(request)
    async with request.app[appkeys.ENGINE].connect() as conn:
        max_seq = await conn.scalar(
            select(func.max(events.c.seq)).where(events.c.store_id == store_id)
        )
    return web.json_response({"epoch": request.app[appkeys.EPOCH], "max_seq": int(max_seq or 0)})


def setup_routes(app: web.Application) -> None:
    """Register the ingest endpoints and their concurrency gate."""
    app[INGEST_GATE] = asyncio.Semaphore(INGEST_SLOTS)
    app.router.add_post(EVENTS_ROUTE, _post_events)
    app.router.add_get("/v1/stores/{store_id}/sync-state", _get_sync_state)
