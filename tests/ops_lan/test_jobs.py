"""Scheduled jobs: outcomes recorded in job_runs and shown by `status`; the agent's own jobs."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.config import parse_config
from agent.db import DB_FILE, Database, Durability
from agent.jobs import (
    ALIVE_KEY,
    JobScheduler,
    checkpoint_wal,
    printer_status,
    prune_sent_events,
)
from agent.outbox import NewEvent, Outbox, epoch_ms, utc_iso
from drivers.printer.emulator import PrinterEmulator
from tests.agent.conftest import start_agent
from tests.helpers import agent_toml, free_port, make_sale
from tests.ops_lan.conftest import run_cli
from tests.sync.conftest import eventually


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    await asyncio.to_thread((tmp_path / "data").mkdir)
    async with Database(tmp_path / "data" / DB_FILE) as database:
        yield database


async def job_rows(db: Database) -> dict[str, dict[str, Any]]:
    rows = await db.reader.execute_fetchall(
        "SELECT name, outcome, detail, runs, failures, finished_at FROM job_runs"
    )
    return {
        name: {"outcome": o, "detail": d, "runs": r, "failures": f, "finished_at": at}
        for name, o, d, r, f, at in rows
    }


async def test_scheduled_job_failing_then_succeeding_is_recorded_and_shown_by_status(
    tmp_path: Path, db: Database
) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("reader database locked")
        return f"pruned {calls * 100} reads"

    async with JobScheduler(db) as jobs:
        jobs.every("raw-read-retention", 0.2, flaky, run_now=True)

        async def ran_twice() -> bool:
            return int((await job_rows(db)).get("raw-read-retention", {}).get("runs", 0)) >= 2

        await eventually(ran_twice, 10)
    row = (await job_rows(db))["raw-read-retention"]
    assert row["outcome"] == "ok"
    assert row["failures"] == 1
    assert row["detail"].startswith("pruned ")

    text = agent_toml(tmp_path / "data", free_port(), None)
    config_path = tmp_path / "agent.toml"
    await asyncio.to_thread(config_path.write_text, text)
    code, out, err = await run_cli("status", "--config", str(config_path), "--json")
    assert code == 0, err
    shown = {job["name"]: job for job in json.loads(out)["jobs"]}
    assert shown["raw-read-retention"]["outcome"] == "ok"
    assert shown["raw-read-retention"]["failures"] == 1
    code, out, err = await run_cli("status", "--config", str(config_path))
    assert code == 0, err
    assert "raw-read-retention: ok at " in out
    assert "1 failed)" in out


async def test_failed_and_hung_runs_are_marked_failed(db: Database) -> None:
    async def broken() -> None:
        raise ValueError("no such table: reads")

    async def hung() -> None:
        await asyncio.Event().wait()

    async with JobScheduler(db) as jobs:
        jobs.daily("key-rotation", "03:00", broken)
        jobs.every("roll-up", 60, hung, timeout_s=0.2)
        assert not await jobs.run_now("key-rotation")
        assert not await jobs.run_now("roll-up")
        with pytest.raises(ValueError, match="registered twice"):
            jobs.every("roll-up", 60, hung)
        with pytest.raises(ValueError, match="HH:MM, got '25:00'"):
            jobs.daily("bad", "25:00", broken)
    rows = await job_rows(db)
    assert rows["key-rotation"]["outcome"] == "failed"
    assert rows["key-rotation"]["detail"] == "no such table: reads"
    assert rows["roll-up"]["outcome"] == "failed"
    assert rows["roll-up"]["detail"] == "did not finish within 0.2 s"


async def test_stopping_the_scheduler_interrupts_a_running_job(db: Database) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    async with JobScheduler(db) as jobs:
        jobs.every("slow", 60, slow, run_now=True)
        await asyncio.wait_for(started.wait(), 10)
    row = (await job_rows(db))["slow"]
    assert (row["outcome"], row["detail"]) == ("failed", "interrupted")


async def test_retention_deletes_only_acknowledged_telemetry_past_the_cutoff(db: Database) -> None:
    now = datetime.now(UTC)
    async with Outbox(db) as outbox:
        events = [NewEvent("footfall", {"i": i}, epoch_ms(now)) for i in range(6)]
        events.append(NewEvent("sale", {"i": 99}, epoch_ms(now)))
        await outbox.append_many(events)
    old = utc_iso(now - timedelta(days=31))
    recent = utc_iso(now - timedelta(days=29))
    async with db.write(Durability.NORMAL) as conn:
        # seq 1-3 acknowledged long ago, 4 recently, 5-6 not yet; 7 (a sale) long ago.
        await conn.execute("UPDATE outbox SET sent_at = ? WHERE seq IN (1, 2, 3, 7)", (old,))
        await conn.execute("UPDATE outbox SET sent_at = ? WHERE seq = 4", (recent,))
    assert await prune_sent_events(db, 30, now) == 3
    left = [row[0] for row in await db.reader.execute_fetchall("SELECT seq FROM outbox")]
    assert left == [4, 5, 6, 7]
    assert "checkpointed" in await asyncio.to_thread(checkpoint_wal, db.path)
    wal = db.path.with_name(DB_FILE + "-wal")
    assert await asyncio.to_thread(lambda: wal.stat().st_size) == 0


async def test_agent_runs_heartbeat_and_printer_status_and_status_shows_them(
    tmp_path: Path,
) -> None:
    async with PrinterEmulator(host="127.0.0.1", port=0) as printer:
        text = agent_toml(tmp_path / "data", free_port(), printer.uri)
        config = await asyncio.to_thread(parse_config, tomllib.loads(text))
        config_path = tmp_path / "agent.toml"
        await asyncio.to_thread(config_path.write_text, text)
        async with start_agent(config) as agent:
            status, _ = await agent.post_sale(make_sale(1))
            assert status == 201
            await printer.wait_for_jobs(1)

            async def beat() -> bool:
                return "heartbeat" in await _job_names(agent.db_path)

            await eventually(beat, 10)
            code, out, err = await run_cli("status", "--config", str(config_path), "--json")
    assert code == 0, err
    shown = json.loads(out)
    alive = datetime.fromisoformat(shown["agent_alive_at"].replace("Z", "+00:00"))
    assert datetime.now(UTC) - alive < timedelta(seconds=30)
    jobs = {job["name"]: job for job in shown["jobs"]}
    assert jobs["heartbeat"]["outcome"] == "ok"
    assert shown["printers"][0]["available"] is True
    assert {"heartbeat"} <= set(jobs)


async def _job_names(path: Path) -> set[str]:
    def read() -> set[str]:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT name FROM job_runs WHERE outcome = 'ok' UNION"
                " SELECT key FROM store_meta WHERE key = ?",
                (ALIVE_KEY,),
            ).fetchall()
        finally:
            conn.close()
        return {row[0] for row in rows}

    return await asyncio.to_thread(read)


@dataclass
class _Seen:
    """A printer as a print worker last saw it (the fields the job reads)."""

    name: str
    available: bool | None
    detail: str


async def test_printer_status_job_publishes_what_workers_saw(db: Database) -> None:
    seen = {
        "front": _Seen("front", True, "online"),
        "back": _Seen("back", False, "paper out"),
        "new": _Seen("new", None, "not checked yet"),
    }
    detail = await printer_status(db, seen)
    assert detail == "1 of 3 printers available; not available: back; not checked yet: new"
    rows = await db.reader.execute_fetchall(
        "SELECT name, available, detail FROM printer_status ORDER BY name"
    )
    assert [tuple(r) for r in rows] == [("back", 0, "paper out"), ("front", 1, "online")]


async def test_scheduled_jobs_run_by_their_trigger_not_only_at_once(db: Database) -> None:
    ran = asyncio.Event()

    async def poll() -> str:
        ran.set()
        return "polled"

    async with JobScheduler(db) as jobs:
        jobs.every("poll", 0.2, poll)  # no run_now: only the trigger can start it
        await asyncio.wait_for(ran.wait(), 5)

        async def recorded() -> bool:
            return bool((await job_rows(db))["poll"]["outcome"] == "ok")

        await eventually(recorded, 5)


async def test_minutely_jobs_run_on_the_clocks_minute(db: Database) -> None:
    async def roll_up() -> str:
        return "rolled up"

    async with JobScheduler(db) as jobs:
        jobs.minutely("footfall-minute", roll_up)
        jobs.minutely("wifi-minute", roll_up, second=2)
        with pytest.raises(ValueError, match="second must be 0-59"):
            jobs.minutely("bad", roll_up, second=60)
        scheduled = {job.id: job.next_run_time for job in jobs._scheduler.get_jobs()}
    now = datetime.now(UTC)
    for name, second in (("footfall-minute", 0), ("wifi-minute", 2)):
        at = scheduled[name]
        assert (at.second, at.microsecond) == (second, 0)
        assert timedelta(0) < at - now <= timedelta(seconds=62)
