"""The agent and the sync daemon open the same new database file at the same moment."""

import asyncio
from pathlib import Path

from agent.db import Database
from agent.migrations import MIGRATIONS


async def test_simultaneous_first_opens_migrate_once(tmp_path: Path) -> None:
    for round_ in range(10):
        path = tmp_path / f"agent-{round_}.db"
        dbs = [Database(path) for _ in range(4)]
        try:
            await asyncio.gather(*(db.open() for db in dbs))
            for db in dbs:
                rows = await db.reader.execute_fetchall("PRAGMA user_version")
                assert next(iter(rows))[0] == len(MIGRATIONS)
                tables = await db.reader.execute_fetchall(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'sync_state'"
                )
                assert next(iter(tables))[0] == 1
        finally:
            for db in dbs:
                await db.close()
