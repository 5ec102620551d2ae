"""Upload: unsent outbox rows go to the cloud in batches; the answer is recorded atomically.

One round (:meth:`Uploader.drain`) reads unsent, not rejected rows in ``seq`` order, one query
per batch bounded by count and by bytes, turns them into envelopes (envelope.v1.json) gzipped
chunk by chunk as the rows arrive, and POSTs the batch; while it is in flight the next one is
read. Each answer is recorded in one transaction: ``sent_at`` for the ``stored`` ids,
``rejected_at`` and the reason for the ``rejected`` ones, and ``last_success_at``. Ids in
neither stay unsent and go again next round, as does a batch whose answer never came (the
cloud is idempotent). A round stops at the first batch that is not full, so a trickle of
sales is sent once per poll interval (the wait bound) rather than one request per sale.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from msgspec import Raw

from agent.db import Database, Durability
from agent.eventid import format_event_id
from agent.outbox import ms_to_iso, utc_iso
from agent.sync.client import CloudClient, EpochChanged, UploadAnswer
from agent.sync.epoch import EpochKeeper
from agent.sync.settings import SyncSettings
from agent.sync.state import state_value, write_state

log = logging.getLogger(__name__)

# Bytes an envelope adds around its payload, at most: keys, a 36-character id, a store id of
# up to 32 characters, a 19-digit seq, a 64-character kind, a 10-digit v, a 24-character time.
ENVELOPE_OVERHEAD = 300

# (seq, event_id, kind, schema_version, occurred_at_ms, payload, ...): outbox columns first.
Row = Sequence[Any]

_READ_BATCH = """
WITH head AS (
    SELECT seq, length(payload) AS size FROM outbox
    WHERE sent_at IS NULL AND rejected_at IS NULL AND seq > :after
    ORDER BY seq LIMIT :count
), fitting AS (
    SELECT seq FROM (
        SELECT seq, sum(size + :overhead) OVER (ORDER BY seq) AS running FROM head
    ) WHERE running <= :budget
)
SELECT o.seq, o.event_id, o.kind, o.schema_version, o.occurred_at_ms, o.payload,
       (SELECT count(*) FROM head)
FROM fitting JOIN outbox AS o USING (seq) ORDER BY o.seq
"""


class _Envelope(msgspec.Struct, gc=False):
    id: str
    store_id: str
    seq: int
    kind: str
    v: int
    at: str
    payload: msgspec.Raw


_ENCODER = msgspec.json.Encoder()
# Rows encoded and compressed at a time: a batch never sits in memory as a whole JSON text.
ENCODE_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Batch:
    """A compressed request body and the outbox rows it carries (event id -> seq)."""

    body: bytes
    seqs: dict[str, int]
    last_seq: int
    full: bool


class BodyWriter:
    """Builds the gzipped body ``{"events": [...]}`` from outbox rows added a chunk at a time."""

    def __init__(self, store_id: str, level: int) -> None:
        self._store_id = store_id
        self._gzip = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self._parts = [self._gzip.compress(b'{"events":[')]
        self.seqs: dict[str, int] = {}
        self.last_seq = 0

    def add(self, rows: Sequence[Row]) -> None:
        """Append envelopes (envelope.v1.json) for outbox rows, in order."""
        if not rows:
            return
        envelopes = []
        for seq, event_id, kind, version, at_ms, payload, *_ in rows:
            text_id = format_event_id(event_id)
            self.seqs[text_id] = seq
            # The payload is stored as JSON already: embedded as is, not decoded and encoded.
            envelopes.append(
                _Envelope(
                    text_id, self._store_id, seq, kind, version, ms_to_iso(at_ms), Raw(payload)
                )
            )
        if self.last_seq:
            self._parts.append(self._gzip.compress(b","))
        # The chunk's own brackets are left out: its items join the one array of the body.
        self._parts.append(self._gzip.compress(memoryview(_ENCODER.encode(envelopes))[1:-1]))
        self.last_seq = int(rows[-1][0])

    def finish(self) -> bytes:
        """The complete gzipped body."""
        self._parts += [self._gzip.compress(b"]}"), self._gzip.flush()]
        return b"".join(self._parts)


class Uploader:
    """Sends the outbox's backlog; :meth:`drain` is one round."""

    def __init__(
        self,
        db: Database,
        client: CloudClient,
        epochs: EpochKeeper,
        store_id: str,
        settings: SyncSettings,
    ) -> None:
        self._db = db
        self._client = client
        self._epochs = epochs
        self._store_id = store_id
        self._settings = settings

    async def drain(self) -> int:
        """Send everything unsent now; return how many events the cloud stored."""
        stored = 0
        after = 0
        in_flight: deque[asyncio.Task[int]] = deque()
        try:
            while True:
                batch = await self._next_batch(after)
                if batch is None:
                    break
                if not after and not self._epochs.confirmed_within(self._settings.epoch_fresh_s):
                    await self._confirm_epoch()
                after = batch.last_seq
                in_flight.append(asyncio.create_task(self._send(batch), name="sync-upload-batch"))
                if len(in_flight) >= self._settings.pipeline_depth:
                    stored += await in_flight.popleft()
                if not batch.full:
                    break
            while in_flight:
                stored += await in_flight.popleft()
        finally:
            # After a failure the other batches are abandoned: their rows are still unsent
            # unless their answer was recorded, and the next round sends them again.
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
        return stored

    async def _next_batch(self, after: int) -> Batch | None:
        settings = self._settings
        params = {
            "after": after,
            "count": settings.batch_events,
            "overhead": ENVELOPE_OVERHEAD,
            "budget": settings.batch_bytes,
        }
        writer = BodyWriter(self._store_id, settings.gzip_level)
        available = 0
        async with self._db.reader.execute(_READ_BATCH, params) as cursor:
            while rows := list(await cursor.fetchmany(ENCODE_CHUNK)):
                available = int(rows[0][6])
                writer.add(rows)
        if not writer.seqs:
            if await self._set_aside_oversized(after):
                return await self._next_batch(after)
            return None
        count = len(writer.seqs)
        # More unsent rows than fitted the byte budget: this batch is full too.
        full = count == settings.batch_events or available > count
        return Batch(writer.finish(), writer.seqs, writer.last_seq, full)

    async def _set_aside_oversized(self, after: int) -> bool:
        """Reject locally the next unsent event if it alone exceeds a batch; True if one was."""
        query = (
            "SELECT seq, length(payload) FROM outbox WHERE sent_at IS NULL"
            " AND rejected_at IS NULL AND seq > ? ORDER BY seq LIMIT 1"
        )
        head = list(await self._db.reader.execute_fetchall(query, (after,)))
        if not head or head[0][1] + ENVELOPE_OVERHEAD <= self._settings.batch_bytes:
            return False
        seq, size = head[0]
        reason = f"event: {size} bytes; a batch holds at most {self._settings.batch_bytes}"
        async with self._db.write(Durability.NORMAL) as conn:
            await conn.execute(
                "UPDATE outbox SET rejected_at = ?, rejected_reason = ? WHERE seq = ?",
                (utc_iso(datetime.now(UTC)), reason, seq),
            )
        log.error("outbox event seq %d set aside: %s", seq, reason)
        return True

    async def _confirm_epoch(self) -> None:
        """Check the cloud's epoch before sending into it (see agent.sync.epoch)."""
        cloud = await self._client.get_sync_state()
        if cloud.epoch != await state_value(self._db.reader, "epoch"):
            raise EpochChanged(cloud.epoch)
        self._epochs.confirm()

    async def _send(self, batch: Batch) -> int:
        async with self._epochs.sending():
            answer = await self._client.post_events(batch.body)
            return await self._record(batch, answer)

    async def _record(self, batch: Batch, answer: UploadAnswer) -> int:
        """Mark stored and rejected events and the success, in one transaction."""
        now = utc_iso(datetime.now(UTC))
        sent = [(now, batch.seqs[i]) for i in answer.stored if i in batch.seqs]
        refused = [
            (now, r.reason, batch.seqs[r.id])
            for r in answer.rejected
            if r.id is not None and r.id in batch.seqs
        ]
        async with self._db.write(Durability.NORMAL) as conn:
            # Checked under the write lock: an epoch change resets the sent marks, and an
            # answer from another cloud database must not mark anything.
            if await state_value(conn, "epoch") != answer.epoch:
                self._epochs.taint(answer.epoch)
                raise EpochChanged(answer.epoch)
            await conn.executemany(
                "UPDATE outbox SET sent_at = ? WHERE seq = ? AND sent_at IS NULL", sent
            )
            if refused:
                await conn.executemany(
                    "UPDATE outbox SET rejected_at = ?, rejected_reason = ? WHERE seq = ?",
                    refused,
                )
            await write_state(conn, {"last_success_at": now})
        self._epochs.confirm()
        for _, reason, seq in refused:
            log.warning("the cloud rejected outbox event seq %d: %s", seq, reason)
        unanswered = len(batch.seqs) - len(sent) - len(refused)
        if unanswered:
            log.warning(
                "%d events of a batch were neither stored nor rejected; retrying", unanswered
            )
        return len(sent)
