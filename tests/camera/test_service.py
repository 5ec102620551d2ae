"""The camera service inside the real agent (run_agent) on generated video files."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from agent.app import run_agent
from agent.config import AgentConfig, ConfigError, parse_config
from agent.db import DB_FILE
from drivers.camera.synth import TrueCrossing, write_video
from tests.camera.conftest import Video
from tests.camera.scenes import separated
from tests.helpers import agent_toml, free_port
from tests.sync.conftest import eventually


def _config(tmp_path: Path, source: str, extra: str = "") -> AgentConfig:
    camera = (
        f'[camera]\nname = "door"\nsource = "{source}"\nline = [16, 120, 304, 120]\n'
        f"fps = 15\npace = false\nreopen_max_s = 0.2\n{extra}"
    )
    text = agent_toml(tmp_path / "data", free_port(), None, extra=camera)
    return parse_config(tomllib.loads(text))


@contextlib.asynccontextmanager
async def running(config: AgentConfig) -> AsyncIterator[None]:
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_agent(config, stop, started), name="agent")
    await asyncio.wait_for(started.wait(), 30)
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def _read(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def _wait_for(check: Callable[[], bool]) -> None:
    # Polls a file written by another thread: there is no event to wait on.
    await eventually(lambda: asyncio.to_thread(check), within_s=30)


async def test_file_source_end_to_end_gives_footfall_windows(
    tmp_path: Path, videos: dict[str, Video], caplog: pytest.LogCaptureFixture
) -> None:
    path, _, truth = videos["separated"]
    config = await asyncio.to_thread(_config, tmp_path, str(path))
    db = tmp_path / "data" / DB_FILE
    caplog.set_level(logging.DEBUG)

    def ended() -> bool:
        rows = _read(db, "SELECT detail FROM device_status WHERE kind = 'camera'")
        return bool(rows) and rows[0][0] == "video file ended"

    async with running(config):
        await _wait_for(ended)
    await asyncio.to_thread(_check_windows_and_privacy, tmp_path, truth)
    assert any(r.name.startswith("agent.camera") for r in caplog.records)
    for record in caplog.records:
        message = record.getMessage()
        assert not any(isinstance(a, bytes | bytearray) for a in record.args or ())
        assert "\\xff\\xd8" not in message
        assert "PNG" not in message
        if record.name.startswith(("agent.camera", "drivers.camera")):
            assert len(message) < 300


async def test_missing_source_is_unavailable_then_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    video = tmp_path / "late.avi"
    config = await asyncio.to_thread(_config, tmp_path, str(video))
    db = tmp_path / "data" / DB_FILE

    def status() -> list[tuple[object, ...]]:
        return _read(db, "SELECT available, detail FROM device_status WHERE kind = 'camera'")

    caplog.set_level(logging.INFO)
    async with running(config):
        await _wait_for(lambda: status() == [(0, f"video file {video} does not exist")])
        await asyncio.sleep(1.0)  # several reopen attempts (backoff capped at 0.2 s)
        scene = separated()
        await asyncio.to_thread(write_video, video, scene)
        await _wait_for(lambda: status() == [(0, "video file ended")])
    camera_logs = [r.getMessage() for r in caplog.records if r.name == "agent.camera.service"]
    assert sum("is not available" in m for m in camera_logs) == 1  # logged once, not per try
    assert sum("is available" in m for m in camera_logs) == 1
    assert sum("dropped" in m for m in camera_logs) == 1  # the file ending


async def test_occupancy_survives_a_restart(tmp_path: Path, videos: dict[str, Video]) -> None:
    """Totals and occupancy saved by one run are where the next run starts counting."""
    path, _, truth = videos["separated"]
    config = await asyncio.to_thread(_config, tmp_path, str(path))
    db = tmp_path / "data" / DB_FILE
    async with running(config):
        await asyncio.sleep(0)
    await asyncio.to_thread(
        _exec, db, "UPDATE camera_state SET occupancy = 5, in_count = 7, out_count = 0"
    )

    def ended() -> bool:
        rows = _read(db, "SELECT detail FROM device_status WHERE kind = 'camera'")
        return bool(rows) and rows[0][0] == "video file ended"

    await asyncio.to_thread(_exec, db, "DELETE FROM device_status")
    async with running(config):
        await _wait_for(ended)
    want_in = sum(1 for c in truth if c.direction == "in")
    state = await asyncio.to_thread(
        _read, db, "SELECT in_count, out_count, occupancy FROM camera_state"
    )
    assert state == [(7 + want_in, len(truth) - want_in, 5)]


def _check_windows_and_privacy(tmp_path: Path, truth: list[TrueCrossing]) -> None:
    db = tmp_path / "data" / DB_FILE
    rows = _read(db, "SELECT payload FROM outbox WHERE kind = 'footfall.window' ORDER BY seq")
    windows = [
        json.loads(str(r[0], "utf-8") if isinstance(r[0], bytes) else str(r[0])) for r in rows
    ]
    assert windows, "no footfall.window event"
    want_in = sum(1 for c in truth if c.direction == "in")
    assert sum(w["in"] for w in windows) == want_in
    assert sum(w["out"] for w in windows) == len(truth) - want_in
    last = windows[-1]
    assert set(last) == {"window_start", "window_s", "camera", "in", "out", "occupancy"}
    assert last["camera"] == "door"
    assert last["window_s"] == 60
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00\.000Z", last["window_start"])
    assert last["occupancy"] == 0  # six in, six out, each in before its out
    state = _read(db, "SELECT in_count, out_count, occupancy FROM camera_state")
    assert state == [(want_in, len(truth) - want_in, 0)]

    # Privacy: no image bytes anywhere in the database files or the logs.
    blobs = b"".join(p.read_bytes() for p in (tmp_path / "data").glob(f"{DB_FILE}*"))
    for magic in (b"\x89PNG", b"\xff\xd8\xff", b"RIFF", b"AVI "):
        assert magic not in blobs
    conn = sqlite3.connect(db)
    try:
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for value in row:
                    if isinstance(value, bytes | str):
                        assert len(value) < 2000, f"a long value in {table}"
    finally:
        conn.close()


def _exec(db: Path, sql: str) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.execute(sql)
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ("source = 0\n", "camera: line is missing"),
        ("source = 0\nline = [1, 2, 1, 2]\n", "camera.line: the two points are the same"),
        ('source = 0\nline = [0, 1, 2, 1]\nclosing_time = "25:00"\n', "camera.closing_time"),
        ("source = 0\nline = [0, 1, 2, 1]\nfps = 0\n", "camera.fps"),
        ("source = 0\nline = [0, 1, 2, 1]\nzoom = 2\n", "camera.zoom: unknown"),
        ("source = -1\nline = [0, 1, 2, 1]\n", "camera.source"),
    ],
)
def test_bad_camera_config_names_the_key(tmp_path: Path, camera: str, expected: str) -> None:
    text = agent_toml(tmp_path, 8380, None, extra="[camera]\n" + camera)
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_config(tomllib.loads(text))
