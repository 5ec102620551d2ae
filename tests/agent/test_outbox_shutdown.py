"""The outbox writer finishes its batch on shutdown: telemetry emitted before a stop is kept."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from agent.db import Database
from agent.outbox import NewEvent, Outbox


async def test_stop_during_a_batch_commit_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    async with Database(path) as db:
        outbox = Outbox(db, max_batch=50_000)
        async with outbox:
            for i in range(20_000):
                outbox.emit(NewEvent("test.telemetry", {"i": i}, 1_700_000_000_000 + i))
            # Past the gathering delay: the writer is committing the batch when we stop.
            await asyncio.sleep(0.06)
        assert outbox.stats.dropped == 0

    def count() -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    assert await asyncio.to_thread(count) == 20_000
