"""RfidService on its own (database, outbox, jobs, a simulator): what stopping must keep."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agent.config import load_config
from agent.db import DB_FILE, Database, Durability
from agent.jobs import JobScheduler
from agent.outbox import Outbox
from agent.rfid.service import RAW_FLUSH_S, TICK_S, RfidService
from drivers.rfid.simulator import ReaderSimulator
from tests.helpers import free_port
from tests.rfid.streams import JACKET, rfid_toml, stream, write_agent_config
from tests.sync.conftest import eventually


async def rows(db: Database, sql: str) -> list[tuple[object, ...]]:
    """A query's rows on the agent's read-only connection."""
    return [tuple(r) for r in await db.reader.execute_fetchall(sql)]


async def test_stopping_while_raw_reads_wait_for_the_writer_keeps_them(tmp_path: Path) -> None:
    async with ReaderSimulator(port=free_port()) as sim:
        path = await asyncio.to_thread(
            write_agent_config, tmp_path, rfid_toml({"a": (sim.port, {1: "room-1"})})
        )
        config = await asyncio.to_thread(load_config, path)
        await asyncio.to_thread(config.store.data_dir.mkdir, mode=0o700)
        async with (
            Database(config.store.data_dir / DB_FILE) as db,
            Outbox(db) as outbox,
            JobScheduler(db, config.store.timezone) as jobs,
        ):
            service = RfidService(config, db, outbox, jobs)
            await service.__aenter__()

            async def reader_up() -> bool:
                return await rows(db, "SELECT available FROM device_status") == [(1,)]

            await eventually(reader_up)
            reads = stream("a", JACKET, 0, 1, origin_us=time.time_ns() // 1000)
            sim.inject(reads)
            # The POS holds the writer (a sale): the service's next flush of raw reads has
            # taken its sums and waits for the lock when the agent is told to stop.
            async with db.write(Durability.NORMAL):

                async def all_received() -> bool:
                    return service.raw.received == len(reads)

                await eventually(all_received)
                await asyncio.sleep(RAW_FLUSH_S + 2 * TICK_S)
                stopping = asyncio.create_task(service.__aexit__(None, None, None))
                await asyncio.sleep(0.1)
            await stopping
            stored = await rows(db, "SELECT sum(reads) FROM rfid_reads")
    assert stored == [(len(reads),)]
    assert service.raw.dropped == 0
