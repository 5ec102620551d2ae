"""The agent against LLRP reader simulators through the real sllurp client: reads → try-ons."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from agent.config import AgentConfig, load_config
from agent.db import DB_FILE, Database
from drivers.rfid.simulator import ReaderSimulator
from tests.agent.conftest import start_agent
from tests.helpers import free_port
from tests.rfid.streams import (
    DRESS,
    DRESS_GTIN,
    GIAI,
    JACKET,
    JACKET_GTIN,
    UNKNOWN,
    US,
    in_order,
    rfid_toml,
    seed_catalogue,
    stream,
    write_agent_config,
)

TUNING = {"window_s": 1.0, "min_dwell_s": 2.0, "end_after_s": 1.5, "max_duration_s": 60.0}
LEAD_S = 6.0  # scenario reads start this long after the simulators: time to connect


async def tryons(path: Path) -> list[dict[str, Any]]:
    """The tryon events in the outbox, oldest first."""
    async with aiosqlite.connect(path) as conn:
        rows = await conn.execute_fetchall(
            "SELECT payload FROM outbox WHERE kind = 'tryon' ORDER BY seq"
        )
    return [json.loads(row[0]) for row in rows]


async def table(path: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of a query on the agent database."""
    async with aiosqlite.connect(path) as conn:
        return [tuple(row) for row in await conn.execute_fetchall(sql)]


@contextlib.asynccontextmanager
async def agent(config: AgentConfig) -> AsyncIterator[Path]:
    """The agent running in this loop, its catalogue replica seeded; yields the DB path."""
    db_path = config.store.data_dir / DB_FILE
    await asyncio.to_thread(config.store.data_dir.mkdir, mode=0o700)
    async with Database(db_path) as db:
        await seed_catalogue(db)
    async with start_agent(config):
        yield db_path


async def wait_for_tryons(path: Path, count: int, within_s: float) -> list[dict[str, Any]]:
    """Poll the outbox until ``count`` try-ons are there (or ``within_s`` passed)."""
    deadline = time.monotonic() + within_s
    while True:
        found = await tryons(path)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.2)


async def test_scenario_reads_become_tryon_events(tmp_path: Path) -> None:
    origin = time.time_ns() // 1000 + round(LEAD_S * US)
    # Reader "a": room-1 (antenna 1) and room-2 (antenna 2), each antenna cross-reading the
    # other room's garments weaker. Reader "b": room-3.
    reads_a = in_order(
        stream("a", JACKET, 0, 5, origin_us=origin, antenna=1),
        stream("a", JACKET, 0, 5, origin_us=origin, antenna=2, rssi=-66.0, hz=4),
        stream("a", DRESS, 0.5, 5.5, origin_us=origin, antenna=2, rssi=-48.0),
        stream("a", DRESS, 0.5, 5.5, origin_us=origin, antenna=1, rssi=-67.0, hz=4),
        # carried past both rooms in under a second: not a try-on
        stream("a", UNKNOWN, 0, 0.8, origin_us=origin, antenna=1, rssi=-62.0),
    )
    # Reader "b"'s clock is three hours behind: its timestamps order and time the reads, but
    # the try-ons must still carry the agent's time.
    skew = -3 * 3600 * US
    reads_b = in_order(
        stream("b", GIAI, 0, 4.5, origin_us=origin + skew, antenna=1),
        stream("b", UNKNOWN, 0.2, 4.2, origin_us=origin + skew, antenna=1, rssi=-55.0),
    )
    async with (
        ReaderSimulator(port=free_port(), reads=reads_a) as sim_a,
        ReaderSimulator(
            port=free_port(), reads=reads_b, start_us=time.time_ns() // 1000 + skew
        ) as sim_b,
    ):
        rfid = rfid_toml(
            {"a": (sim_a.port, {1: "room-1", 2: "room-2"}), "b": (sim_b.port, {1: "room-3"})},
            **TUNING,
        )
        path = await asyncio.to_thread(write_agent_config, tmp_path, rfid)
        config = await asyncio.to_thread(load_config, path)
        async with agent(config) as db_path:
            await asyncio.gather(sim_a.wait_inventorying(), sim_b.wait_inventorying())
            found = await wait_for_tryons(db_path, 4, LEAD_S + 15)
            # Nothing more comes: the passer-by stays filtered.
            await asyncio.sleep(1.5)
            found = await tryons(db_path)
        sent = sim_a.reads_sent + sim_b.reads_sent
        assert sim_a.reads_dropped == sim_b.reads_dropped == 0
    got = sorted((t["room"], t["reader"], t["epc"], t["gtin"], t["sku"]) for t in found)
    assert got == [
        ("room-1", "a", JACKET.hex().upper(), JACKET_GTIN, "JKT-RED-M"),
        ("room-2", "a", DRESS.hex().upper(), DRESS_GTIN, "DRS-BLU-S"),
        ("room-3", "b", UNKNOWN.hex().upper(), "06901234567915", None),
        ("room-3", "b", GIAI.hex().upper(), None, None),
    ]
    by_room = {t["room"]: t for t in found if t["epc"] != UNKNOWN.hex().upper()}
    assert abs(by_room["room-1"]["dwell_s"] - 5.0) < 0.2
    assert abs(by_room["room-2"]["dwell_s"] - 5.0) < 0.2
    now = datetime.now(UTC)
    for t in found:
        ended = datetime.fromisoformat(t["ended_at"].replace("Z", "+00:00"))
        assert timedelta(0) < now - ended < timedelta(seconds=30), t
        assert t["closed_by"] == "left"
        assert len(t["session_id"]) == 32
        assert t["started_at"].endswith("Z")
        assert t["ended_at"] > t["started_at"]
    assert len({t["session_id"] for t in found}) == 4
    # Raw reads stayed in the store, all of them, and never went to the outbox.
    ((stored,),) = await table(db_path, "SELECT sum(reads) FROM rfid_reads")
    assert stored == sent
    kinds = await table(db_path, "SELECT DISTINCT kind FROM outbox")
    assert kinds == [("tryon",)]
    status = await table(db_path, "SELECT kind, name FROM device_status ORDER BY name")
    assert status == [("rfid", "a"), ("rfid", "b")]
    retention = await table(db_path, "SELECT outcome FROM job_runs WHERE name LIKE 'rfid-%'")
    assert retention == [("ok",)]


async def test_reader_restart_mid_session_loses_nothing(tmp_path: Path) -> None:
    origin = time.time_ns() // 1000 + round(LEAD_S * US)
    reads = in_order(
        # A jacket tried on for 9 s; the reader reboots 4 s in, down 1.5 s.
        stream("a", JACKET, 0, 9, origin_us=origin, antenna=1),
        # A dress whose try-on completes before the reboot.
        stream("a", DRESS, 0, 3, origin_us=origin, antenna=2),
    )
    async with ReaderSimulator(port=free_port(), reads=reads) as sim:
        rfid = rfid_toml({"a": (sim.port, {1: "room-1", 2: "room-2"})}, **TUNING)
        path = await asyncio.to_thread(write_agent_config, tmp_path, rfid)
        config = await asyncio.to_thread(load_config, path)
        async with agent(config) as db_path:
            await sim.wait_inventorying()
            await asyncio.sleep(LEAD_S + 4)
            await sim.reboot(1.5)
            # Reconnects by itself (backoff), and keeps reading.
            await sim.wait_inventorying(20)
            found = await wait_for_tryons(db_path, 2, 15)
            await asyncio.sleep(1.5)
            found = await tryons(db_path)
            status = await table(db_path, "SELECT available FROM device_status")
    assert sim.connections == 2
    assert status == [(1,)]
    got = sorted((t["room"], t["sku"], t["closed_by"]) for t in found)
    assert got == [("room-1", "JKT-RED-M", "left"), ("room-2", "DRS-BLU-S", "left")]
    jacket = next(t for t in found if t["sku"] == "JKT-RED-M")
    # One session across the restart (reads lost while the reader was down are a gap).
    assert jacket["dwell_s"] > 8.5
