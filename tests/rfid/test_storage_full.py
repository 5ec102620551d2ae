"""Raw reads on a full disk: the batch is counted as dropped, and the oldest reads make room."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agent.db import Database, StorageFull
from agent.rfid.rawreads import PRUNE_CHUNK_S, RawReadLog, drop_oldest_reads
from drivers.rfid.reads import TagRead
from tests.agent.test_disk_full import fill, small_fs  # noqa: F401 - the fixture
from tests.rfid.streams import JACKET

BASE_S = 1_800_000_000


def reads_at(second: int, count: int) -> list[TagRead]:
    return [
        TagRead("a", 1 + i % 4, JACKET[:-2] + i.to_bytes(2, "big"), -55.0, second * 10**6, 1)
        for i in range(count)
    ]


async def test_full_disk_drops_raw_reads_counted_and_oldest_first(small_fs: Path) -> None:  # noqa: F811
    log = RawReadLog()
    async with Database(small_fs / "agent.db") as db:
        # A few hours of history, an hour apart (the oldest will make room first).
        for hour in range(3):
            log.add("a", reads_at(BASE_S + hour * 3600, 200), 0)
            assert await log.flush(db) == 200
        # Room for a small delete, not for a big batch of new reads.
        filler = await asyncio.to_thread(fill, small_fs, 64 * 1024)
        for second in range(BASE_S + 4 * 3600, BASE_S + 4 * 3600 + 200):
            log.add("a", reads_at(second, 200), 0)
        with pytest.raises(StorageFull):
            await log.flush(db)
        assert log.dropped == 200 * 200
        assert log.written == 600

        deleted = await drop_oldest_reads(db)
        assert deleted == 200  # the oldest hour's rows only
        seconds = await db.reader.execute_fetchall("SELECT DISTINCT second FROM rfid_reads")
        assert sorted(s for (s,) in seconds) == [BASE_S + 3600, BASE_S + 7200]
        assert PRUNE_CHUNK_S < 3600

        await asyncio.to_thread(filler.unlink)
        log.add("a", reads_at(BASE_S + 5 * 3600, 10), 0)
        assert await log.flush(db) == 10  # writing resumes once there is room
