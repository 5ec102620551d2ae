"""Raw reads kept in the store: aggregated per second in memory, written once a second.

Nothing here reaches the outbox: raw reads never leave the store. 4,400 reads/s must not cost
a commit each, so reads are summed per (second, reader, antenna, EPC) and one transaction a
second upserts the sums (a second may straddle two flushes, hence the upsert).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.db import Database, DatabaseError, Durability
from drivers.rfid.reads import TagRead

_UPSERT = """
INSERT INTO rfid_reads (second, reader, antenna, epc, reads, seen, rssi_max, rssi_sum)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (second, reader, antenna, epc) DO UPDATE SET
    reads = reads + excluded.reads,
    seen = seen + excluded.seen,
    rssi_max = max(rssi_max, excluded.rssi_max),
    rssi_sum = rssi_sum + excluded.rssi_sum
"""
# Retention deletes at most this many seconds of reads per transaction, so a large backlog
# of old rows never holds the writer (and the POS's sales) for long.
PRUNE_CHUNK_S = 600


@dataclass(slots=True)
class _Sum:
    reads: int
    seen: int
    rssi_max: float
    rssi_sum: float


Row = tuple[int, str, int, str, int, int, float, float]


class RawReadLog:
    """Per-second sums of reads not yet written."""

    def __init__(self) -> None:
        self._sums: dict[tuple[int, str, int, bytes], _Sum] = {}
        self.received = 0  # reads added since start
        self.written = 0  # reads committed since start
        self.dropped = 0  # reads whose write failed, e.g. the disk was full (never silent)

    def add(self, reader: str, reads: Iterable[TagRead], offset_us: int) -> None:
        """Account one report's reads (timestamps + ``offset_us`` = the agent's clock)."""
        sums = self._sums
        n = 0
        for read in reads:
            n += 1
            key = ((read.seen_at_us + offset_us) // 1_000_000, reader, read.antenna, read.epc)
            entry = sums.get(key)
            if entry is None:
                sums[key] = _Sum(1, read.count, read.rssi, read.rssi)
            else:
                entry.reads += 1
                entry.seen += read.count
                entry.rssi_sum += read.rssi
                if read.rssi > entry.rssi_max:
                    entry.rssi_max = read.rssi
        self.received += n

    def take(self) -> list[Row]:
        """The pending sums as rows; the log starts empty again."""
        sums, self._sums = self._sums, {}
        return [
            (second, reader, antenna, epc.hex().upper(), s.reads, s.seen, s.rssi_max, s.rssi_sum)
            for (second, reader, antenna, epc), s in sums.items()
        ]

    async def flush(self, db: Database) -> int:
        """Write the pending sums in one transaction; the number of reads written.

        On a failed write (StorageFull or another DatabaseError) the sums are dropped, counted
        in ``dropped``, and the error is raised.
        """
        rows = self.take()
        if not rows:
            return 0
        reads = sum(row[4] for row in rows)
        try:
            async with db.write(Durability.NORMAL) as conn:
                await conn.executemany(_UPSERT, rows)
        except DatabaseError:
            self.dropped += reads
            raise
        self.written += reads
        return reads


async def _delete_oldest_chunk(db: Database, before_second: int | None) -> tuple[int, bool]:
    """Delete up to ``PRUNE_CHUNK_S`` seconds of the oldest reads older than ``before_second``
    (None: no bound); (rows deleted, whether there was anything to delete)."""
    async with db.reader.execute("SELECT min(second) FROM rfid_reads") as cur:
        row = await cur.fetchone()
    oldest = row[0] if row is not None else None
    if oldest is None or (before_second is not None and oldest >= before_second):
        return 0, False
    limit = oldest + PRUNE_CHUNK_S
    if before_second is not None:
        limit = min(limit, before_second)
    async with db.write(Durability.NORMAL) as conn:
        cur = await conn.execute("DELETE FROM rfid_reads WHERE second < ?", (limit,))
        return cur.rowcount, True


async def drop_oldest_reads(db: Database) -> int:
    """Storage is full: delete the oldest stretch of raw reads (telemetry yields to sales)."""
    deleted, _ = await _delete_oldest_chunk(db, None)
    return deleted


async def prune_reads(db: Database, before_second: int) -> int:
    """Delete raw reads older than ``before_second`` (Unix s), in short transactions."""
    total = 0
    while True:
        deleted, more = await _delete_oldest_chunk(db, before_second)
        if not more:
            return total
        total += deleted
