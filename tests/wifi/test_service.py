"""The agent end to end with a pcap source: wifi.window events in the outbox, and privacy.

The privacy test greps everything the agent wrote (database, WAL, shared memory, every other
file in data_dir, the outbox payloads, the captured logs) for every MAC address of the test
capture, in the usual text forms and as raw bytes, and for every SSID: none may be there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.wifi.privacy import SECRET_FILE
from tests.agent.conftest import make_config, start_agent
from tests.sync.conftest import eventually
from tests.wifi import scenario

EVENT_KEYS = {
    "window_start",
    "window_s",
    "sniffer",
    "devices",
    "visitors",
    "passers_by",
    "occupancy",
    "dwell_hist",
    "new_devices",
    "repeat_devices",
    "fixed_excluded",
    "frames",
    "malformed",
}


def mac_forms(mac: str) -> list[bytes]:
    raw = bytes.fromhex(mac.replace(":", ""))
    plain = raw.hex()
    texts = [
        mac,
        mac.upper(),
        plain,
        plain.upper(),
        mac.replace(":", "-"),
        mac.upper().replace(":", "-"),
        ".".join(plain[i : i + 4] for i in (0, 4, 8)),
    ]
    return [raw] + [t.encode() for t in texts]


def count_events(data_dir: Path) -> int:
    conn = sqlite3.connect(data_dir / "agent.db")
    try:
        count: int = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return count
    finally:
        conn.close()


def events_at_least(data_dir: Path, count: int) -> Callable[[], Awaitable[bool]]:
    """A check for ``eventually``: the outbox holds at least ``count`` events."""

    async def check() -> bool:
        return await asyncio.to_thread(count_events, data_dir) >= count

    return check


def read_files(data_dir: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in data_dir.rglob("*") if p.is_file() and p.name != SECRET_FILE
    }


def read_outputs(data_dir: Path) -> tuple[list[dict[str, Any]], dict[str, bytes], list[Any]]:
    files = read_files(data_dir)
    conn = sqlite3.connect(data_dir / "agent.db")
    try:
        events = [
            json.loads(row[0])
            for row in conn.execute(
                "SELECT payload FROM outbox WHERE kind = 'wifi.window' ORDER BY seq"
            )
        ]
        rollups = conn.execute(
            "SELECT period_s, count(*) FROM wifi_windows GROUP BY period_s ORDER BY period_s"
        ).fetchall()
        fixed = conn.execute("SELECT count(*), sum(days) FROM wifi_fixed_devices").fetchone()
        status = conn.execute(
            "SELECT name, available, detail FROM device_status WHERE kind = 'wifi'"
        ).fetchall()
    finally:
        conn.close()
    return events, files, [rollups, fixed, status]


async def test_pcap_source_emits_one_window_per_minute_and_stores_no_identifier(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="aiosqlite")
    sc = scenario.build()
    pcap = await asyncio.to_thread(sc.write, tmp_path / "shop.pcap")
    wifi = f'[wifi]\nsniffer = "door"\npcap = "{pcap}"\nspeed = 0\n'
    config = await make_config(tmp_path, None, extra=wifi)
    async with start_agent(config):
        await eventually(events_at_least(config.store.data_dir, 120))  # speed 0: under 1 s
        assert "replay finished" in caplog.text
        running = await asyncio.to_thread(read_files, config.store.data_dir)
    data_dir = config.store.data_dir
    events, files, (rollups, fixed, status) = await asyncio.to_thread(read_outputs, data_dir)

    assert len(events) == 120  # two hours of one-minute windows
    assert all(set(e) == EVENT_KEYS for e in events)
    assert all(e["sniffer"] == "door" and e["window_s"] == 60 for e in events)
    assert all(e["window_start"].endswith(":00.000Z") for e in events)
    assert sum(e["frames"] for e in events) == 139 + 110  # everyone, then the printer
    assert sum(e["malformed"] for e in events) == 3
    assert [(e["devices"], e["visitors"], e["passers_by"]) for e in events[:6]] == [
        (4, 0, 4),
        (4, 0, 4),
        (4, 4, 0),
        (4, 4, 0),
        (4, 4, 0),
        (6, 4, 2),
    ]
    # The printer (-45 dBm, every minute) counts as a visitor until learned fixed.
    assert events[-1]["devices"] == 0
    assert events[-1]["fixed_excluded"] == 1
    assert sum(sum(e["dwell_hist"]) for e in events) == 5
    assert all(e["new_devices"] is None for e in events)
    assert rollups == [(600, 12), (3600, 2)]
    assert fixed == (1, 1)
    assert status == [("door", 1, "replay of shop.pcap finished")]

    # Privacy: no MAC in any form, no SSID, anywhere the agent wrote. The capture itself
    # holds them all (the search would find them).
    raw_capture = await asyncio.to_thread(pcap.read_bytes)
    assert all(mac_forms(mac)[0] in raw_capture for mac in sc.macs)
    assert all(ssid in raw_capture for ssid in scenario.SSIDS)
    logs = caplog.text.encode()
    payloads = json.dumps(events).encode()
    assert len(sc.macs) == 49
    # While running the WAL holds the recent pages; after the stop they are in the main file.
    assert {"agent.db", "agent.db-wal"} <= set(running)
    assert len(running["agent.db-wal"]) > 0
    written = [*running.items(), *files.items()]
    for where, blob in [*written, ("logs", logs), ("outbox", payloads)]:
        for mac in sorted(sc.macs):
            for form in mac_forms(mac):
                assert form not in blob, f"{mac} found in {where} as {form!r}"
        for ssid in scenario.SSIDS:
            for form in (ssid, ssid.hex().encode(), ssid.decode().lower().encode()):
                assert form not in blob, f"SSID found in {where}"


async def test_missing_interface_is_reported_once_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="agent.wifi")
    wifi = '[wifi]\nsniffer = "door"\ninterface = "nosuchwlan9"\nretry_max_s = 1\n'
    config = await make_config(tmp_path, None, extra=wifi)

    def status() -> list[tuple[int, str]]:
        conn = sqlite3.connect(config.store.data_dir / "agent.db")
        try:
            return conn.execute(
                "SELECT available, detail FROM device_status WHERE kind = 'wifi'"
            ).fetchall()
        finally:
            conn.close()

    async with start_agent(config):
        await asyncio.sleep(2.5)  # the first attempt, and retries after 1 s and 1 s more
        rows = await asyncio.to_thread(status)
    assert len(rows) == 1
    available, detail = rows[0]
    assert available == 0
    assert "nosuchwlan9" in detail
    drops = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(drops) == 1
    assert drops[0].levelno == logging.WARNING
    retries = [
        r for r in caplog.records if r.levelno == logging.DEBUG and "nosuchwlan9" in r.getMessage()
    ]
    assert len(retries) >= 1  # retried, at DEBUG


async def test_stable_keys_count_new_then_repeat_devices(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agent.wifi")
    pcap = await asyncio.to_thread(scenario.build().write, tmp_path / "shop.pcap")
    wifi = f'[wifi]\npcap = "{pcap}"\nspeed = 0\nstable_keys = true\n'
    config = await make_config(tmp_path, None, extra=wifi)

    async def run_once(expected_events: int) -> list[dict[str, Any]]:
        async with start_agent(config):
            await eventually(events_at_least(config.store.data_dir, expected_events))
        events, _, _ = await asyncio.to_thread(read_outputs, config.store.data_dir)
        return events[expected_events - 120 :]

    first = await run_once(120)
    assert sum(e["new_devices"] for e in first) == 6  # five people and the printer
    assert sum(e["repeat_devices"] for e in first) == 0
    second = await run_once(240)  # the same phones come back (same data_dir, same secret)
    assert sum(e["repeat_devices"] for e in second) == 5
    assert sum(e["new_devices"] for e in second) == 0
    assert second[-1]["fixed_excluded"] == 1
    assert second[0]["fixed_excluded"] == 1  # the printer's tag is remembered: fixed at once


async def test_key_rotation_prunes_rollups_and_seen_devices_past_retention(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime, timedelta

    from agent.db import Database, Durability
    from agent.jobs import JobScheduler
    from agent.outbox import Outbox
    from agent.wifi.service import WifiService

    pcap = await asyncio.to_thread(scenario.build().write, tmp_path / "shop.pcap")
    wifi = f'[wifi]\npcap = "{pcap}"\nspeed = 0\nstable_keys = true\nretention_days = 30\n'
    config = await make_config(tmp_path, None, extra=wifi)
    await asyncio.to_thread(config.store.data_dir.mkdir, mode=0o700)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=45), now - timedelta(days=2)
    async with Database(config.store.data_dir / "agent.db") as db, Outbox(db) as outbox:
        async with db.write(Durability.NORMAL) as conn:
            for when in (old, recent):
                await conn.execute(
                    "INSERT INTO wifi_windows VALUES ('old-test', 3600, ?, 1, 1, 0, 0.5, "
                    "'[0,0,0,0,0,0]', 0, 1, 0, 60)",
                    (int(when.timestamp() * 1000),),
                )
                day = when.date().isoformat()
                await conn.execute(
                    "INSERT INTO wifi_seen_devices VALUES (?, ?, ?)", (day.encode(), day, day)
                )
        async with JobScheduler(db) as jobs, WifiService(config, db, outbox, jobs):
            assert await jobs.run_now("wifi-key-rotation")
        windows = await db.reader.execute_fetchall(
            "SELECT start_ms FROM wifi_windows WHERE sniffer = 'old-test'"
        )
        seen = await db.reader.execute_fetchall("SELECT last_day FROM wifi_seen_devices")
    assert [w for (w,) in windows] == [int(recent.timestamp() * 1000)]
    assert old.date().isoformat() not in {d for (d,) in seen}
    assert recent.date().isoformat() in {d for (d,) in seen}
