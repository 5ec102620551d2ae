"""The outbox: every event the store will send to the cloud, in commit order.

Sales append their event inside their own transaction (:meth:`Outbox.append_in`). Device
telemetry goes through :meth:`Outbox.emit`, which never blocks: a writer task commits what
has queued up in one ``executemany`` transaction per batch, so a burst of RFID reads costs one
commit, not thousands. The sync daemon (another process) reads unsent rows in ``seq`` order
and sets ``sent_at`` in the same transaction that records the cloud's acknowledgement, or
``rejected_at`` and the reason for events the cloud refused (set aside, out of the backlog).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import aiosqlite
import msgspec

from agent.db import Database, DatabaseError, Durability, StorageFull
from agent.eventid import EventIdGenerator

log = logging.getLogger(__name__)

_INSERT = (
    "INSERT INTO outbox (event_id, kind, schema_version, occurred_at_ms, payload) "
    "VALUES (?, ?, ?, ?, ?)"
)


def utc_iso(moment: datetime) -> str:
    """RFC 3339 UTC text with millisecond precision."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_ms(moment: datetime) -> int:
    """Unix time in milliseconds of an aware datetime."""
    return int(moment.timestamp() * 1000)


def ms_to_iso(ms: int) -> str:
    """RFC 3339 UTC text of a Unix time in milliseconds."""
    seconds, millis = divmod(ms, 1000)
    return f"{_iso_second(seconds)}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    # Events come in bursts within the same second: the sync daemon formats each one.
    return datetime.fromtimestamp(seconds, UTC).isoformat()[:19]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event not yet in the outbox; ``at_ms`` is when it happened (Unix ms, UTC)."""

    kind: str
    payload: Mapping[str, Any]
    at_ms: int
    schema_version: int = 1


@dataclass(slots=True)
class OutboxStats:
    """Counters the status page and metrics show."""

    appended: int = 0
    batches: int = 0
    dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)


class Outbox:
    """Appends events; ``async with`` runs the batching writer for :meth:`emit`."""

    def __init__(
        self,
        db: Database,
        *,
        max_batch: int = 2000,
        max_delay_s: float = 0.05,
        max_queue: int = 200_000,
    ) -> None:
        self._db = db
        self._ids = EventIdGenerator()
        self._encoder = msgspec.json.Encoder()
        self._max_batch = max_batch
        self._max_delay_s = max_delay_s
        self._max_queue = max_queue
        self._pending: deque[NewEvent] = deque()
        self._has_pending = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.stats = OutboxStats()

    async def __aenter__(self) -> Outbox:
        self._writer = asyncio.create_task(self._write_batches(), name="outbox-writer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Let the writer finish the batch it may be committing (cancelling it there would roll
        # the batch back and lose it), then write whatever was emitted meanwhile.
        self._closing = True
        self._has_pending.set()
        if self._writer is not None:
            try:
                await self._writer
            finally:
                if not self._writer.done():
                    self._writer.cancel()
        await self.flush()

    def _rows(self, events: Sequence[NewEvent]) -> list[tuple[bytes, str, int, int, bytes]]:
        ids = self._ids.new_ids(len(events))
        encode = self._encoder.encode
        return [
            (event_id, event.kind, event.schema_version, event.at_ms, encode(event.payload))
            for event_id, event in zip(ids, events, strict=True)
        ]

    async def append_in(self, conn: aiosqlite.Connection, event: NewEvent) -> tuple[int, bytes]:
        """Append one event inside the caller's transaction; return (seq, event_id)."""
        row = self._rows([event])[0]
        inserted = await conn.execute_insert(_INSERT, row)
        assert inserted is not None
        self.stats.appended += 1
        return int(inserted[0]), row[0]

    async def append_many(
        self, events: Sequence[NewEvent], durability: Durability = Durability.NORMAL
    ) -> None:
        """Append events in one transaction."""
        if not events:
            return
        rows = self._rows(events)
        async with self._db.write(durability) as conn:
            await conn.executemany(_INSERT, rows)
        self.stats.appended += len(rows)
        self.stats.batches += 1

    def emit(self, event: NewEvent) -> bool:
        """Queue a telemetry event for the next batch; False (and counted) if the queue is full."""
        if len(self._pending) >= self._max_queue:
            self._count_drop("queue full")
            return False
        self._pending.append(event)
        if not self._has_pending.is_set():
            self._has_pending.set()
        return True

    def _count_drop(self, reason: str, count: int = 1) -> None:
        self.stats.dropped += count
        self.stats.drop_reasons[reason] = self.stats.drop_reasons.get(reason, 0) + count

    def _take(self) -> list[NewEvent]:
        pending = self._pending
        size = min(len(pending), self._max_batch)
        return [pending.popleft() for _ in range(size)]

    async def flush(self) -> None:
        """Write everything queued so far."""
        while self._pending:
            await self._write_once(self._take())

    async def _write_once(self, batch: list[NewEvent]) -> None:
        try:
            await self.append_many(batch)
        except StorageFull:
            # Telemetry yields to sales when space runs out: drop this batch, count it.
            self._count_drop("storage full", len(batch))
            log.warning("outbox: storage full, dropped %d telemetry events", len(batch))
        except DatabaseError:
            self._count_drop("database error", len(batch))
            log.exception("outbox: could not write %d telemetry events", len(batch))

    async def _write_batches(self) -> None:
        while True:
            await self._has_pending.wait()
            if self._closing:
                return
            if len(self._pending) < self._max_batch:
                # Let a burst gather into one transaction.
                await asyncio.sleep(self._max_delay_s)
            batch = self._take()
            if not self._pending and not self._closing:
                self._has_pending.clear()
            if batch:
                await self._write_once(batch)


# The backlog: events not yet acknowledged, less those the cloud refused (set aside).
BACKLOG_SQL = (
    "SELECT count(*), min(occurred_at_ms) FROM outbox WHERE sent_at IS NULL AND rejected_at IS NULL"
)


async def outbox_depth(conn: aiosqlite.Connection) -> tuple[int, str | None]:
    """Number of unsent events (not counting ones the cloud rejected) and the oldest's time."""
    ((count, oldest_ms),) = await conn.execute_fetchall(BACKLOG_SQL)
    return int(count), ms_to_iso(oldest_ms) if oldest_ms is not None else None
