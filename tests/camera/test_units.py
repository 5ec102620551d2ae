"""Smaller pieces: the window bookkeeping, global changes, sources, the closing-time reset."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import threading
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agent.camera.service import WINDOW_MS, CameraService, FootfallTally
from agent.config import parse_config
from agent.db import DB_FILE, Database, Durability
from agent.jobs import JobScheduler
from agent.outbox import Outbox, utc_iso
from drivers.camera.capture import (
    Frame,
    FrameGrabber,
    SourceUnavailable,
    describe_source,
    open_capture,
)
from drivers.camera.counting import FootfallCounter
from tests.camera.conftest import Video
from tests.helpers import agent_toml, free_port


def test_occupancy_never_negative_and_windows_never_repeat() -> None:
    tally = FootfallTally("2026-11-28")
    for direction in ("out", "in", "in", "out", "out", "out"):
        tally.add(direction)
    assert (tally.total_in, tally.total_out, tally.occupancy) == (2, 4, 0)
    minute = 1_764_300_000_000 - 1_764_300_000_000 % WINDOW_MS
    event = tally.close_window("door", minute)
    assert event.kind == "footfall.window"
    assert event.at_ms == minute
    assert dict(event.payload) == {
        "window_start": event.payload["window_start"],
        "window_s": 60,
        "camera": "door",
        "in": 2,
        "out": 4,
        "occupancy": 0,
    }
    assert event.payload["window_start"].endswith(":00.000Z")
    # Later in the same minute (a restart): the counts go to the next minute.
    assert tally.window_start(minute + 5_000) == minute + WINDOW_MS
    assert tally.window_start(minute + 3 * WINDOW_MS + 1) == minute + 3 * WINDOW_MS


def test_a_sudden_light_change_relearns_instead_of_counting() -> None:
    rng = np.random.default_rng(3)
    floor = rng.integers(70, 170, (240, 320), dtype=np.uint8)
    ramp = np.linspace(1.8, 1.0, 320, dtype=np.float32)[None, :]
    counter = FootfallCounter((0, 120, 320, 120), (320, 240), 15)
    crossings = []
    for i in range(90):
        picture = floor * ramp if i >= 45 else floor.astype(np.float32)
        noisy = picture + rng.normal(0, 5, floor.shape)
        crossings += counter.process(np.clip(noisy, 0, 255).astype(np.uint8), i / 15)
    assert counter.stats.relearned >= 1
    assert crossings == []


def test_unreachable_stream_and_credentials_kept_out_of_logs() -> None:
    url = f"http://user:secret@127.0.0.1:{free_port()}/stream.mjpg"
    with pytest.raises(SourceUnavailable, match=re.escape("cannot open http://127.0.0.1")):
        open_capture(url)
    assert "secret" not in describe_source(url)
    assert describe_source(3) == "device 3"


async def test_closing_time_job_resets_occupancy(tmp_path: Path) -> None:
    camera = '[camera]\nsource = "/nonexistent.avi"\nline = [0, 1, 2, 1]\nclosing_time = "21:30"\n'
    text = agent_toml(tmp_path / "data", free_port(), None, extra=camera)
    config = await asyncio.to_thread(parse_config, tomllib.loads(text))
    await asyncio.to_thread((tmp_path / "data").mkdir)
    async with (
        Database(tmp_path / "data" / DB_FILE) as db,
        Outbox(db) as outbox,
        JobScheduler(db, config.store.timezone) as jobs,
        CameraService(config, db, outbox, jobs) as service,
    ):
        assert "camera-occupancy-reset" in jobs.names
        for _ in range(3):
            service.tally.add("in")
        assert await service.reset_occupancy() == "occupancy 3 -> 0"
        async with db.reader.execute("SELECT occupancy, in_count FROM camera_state") as cur:
            assert [tuple(row) for row in await cur.fetchall()] == [(0, 3)]
    # The camera never delivered a frame: no window was sent (a gap, not zero visitors).
    rows = await asyncio.to_thread(_outbox_kinds, tmp_path / "data" / DB_FILE)
    assert "footfall.window" not in rows


def _outbox_kinds(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [kind for (kind,) in conn.execute("SELECT kind FROM outbox")]
    finally:
        conn.close()


def test_a_failing_frame_reports_unavailable_and_counting_resumes(
    videos: dict[str, Video],
) -> None:
    """A frame the pipeline chokes on must not end the capture thread for good."""
    path = videos["separated"][0]
    states: list[tuple[bool, str]] = []
    frames: list[float] = []
    resumed = threading.Event()

    def on_frame(_frame: Frame, t: float) -> None:
        frames.append(t)
        if len(frames) == 3:
            raise ValueError("a frame the pipeline cannot take")
        if len(frames) > 6:
            resumed.set()

    grabber = FrameGrabber(
        str(path),
        on_frame,
        lambda available, detail: states.append((available, detail)),
        fps=15,
        pace=False,
        loop=True,
        backoff_start_s=0.05,
    )
    grabber.start()
    try:
        assert resumed.wait(20), f"counting did not resume: {states}"
    finally:
        grabber.stop()
    assert states[:3] == [
        (True, "reading separated.avi"),
        (False, "frame handling failed: ValueError: a frame the pipeline cannot take"),
        (True, "reading separated.avi"),
    ]


async def test_occupancy_saved_before_the_last_closing_time_starts_at_zero(
    tmp_path: Path,
) -> None:
    """The agent was off at closing time (its reset job never ran): nobody is inside now."""
    camera = '[camera]\nsource = "/nonexistent.avi"\nline = [0, 1, 2, 1]\n'
    text = agent_toml(tmp_path / "data", free_port(), None, extra=camera)
    config = await asyncio.to_thread(parse_config, tomllib.loads(text))
    await asyncio.to_thread((tmp_path / "data").mkdir)
    saved = {"yesterday": datetime.now(UTC) - timedelta(days=1, minutes=1), "now": None}
    occupancy = {}
    async with Database(tmp_path / "data" / DB_FILE) as db, Outbox(db) as outbox:
        for name, at in saved.items():
            async with db.write(Durability.NORMAL) as conn:
                await conn.execute(
                    "INSERT OR REPLACE INTO camera_state VALUES ('entrance', '2026-01-01',"
                    " 9, 5, 4, NULL, ?)",
                    (utc_iso(at or datetime.now(UTC)),),
                )
            async with (
                JobScheduler(db, config.store.timezone) as jobs,
                CameraService(config, db, outbox, jobs) as service,
            ):
                occupancy[name] = service.tally.occupancy
    assert occupancy == {"yesterday": 0, "now": 4}
