"""The entrance-camera service: frames → crossings → per-minute ``footfall.window`` events.

The capture and the counting pipeline run on the grabber's worker thread (OpenCV releases
the GIL while it works), so the event loop never blocks; crossings come back with
``loop.call_soon_threadsafe``. Only counts leave that thread: frames are never stored,
logged or sent. Every minute (on the wall clock's minute) the window that ended is emitted
with the occupancy at its end (unless the camera was down for all of it), and today's
totals are saved, so a restart keeps occupancy; on shutdown the partial window is emitted.
Occupancy is in - out, never negative, and goes back to 0 at the configured closing time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from zoneinfo import ZoneInfo

from agent.camera.config import CameraConfig
from agent.config import AgentConfig
from agent.db import Database, DatabaseError, Durability
from agent.devicestatus import record_device_status
from agent.jobs import JobScheduler
from agent.outbox import NewEvent, Outbox, ms_to_iso, utc_iso
from drivers.camera.capture import Frame, FrameGrabber, describe_source
from drivers.camera.counting import CountingSettings, Crossing, FootfallCounter

log = logging.getLogger(__name__)

WINDOW_MS = 60_000
EVENT_KIND = "footfall.window"


def counting_settings(camera: CameraConfig) -> CountingSettings:
    """The counting pipeline's settings from the ``[camera]`` section."""
    return CountingSettings(
        process_width=camera.process_width,
        margin=camera.margin,
        person_size=camera.person_size,
        global_change=camera.global_change,
    )


@dataclass(slots=True)
class FootfallTally:
    """Today's totals, the open window's counts and the occupancy (pure bookkeeping)."""

    day: str
    total_in: int = 0
    total_out: int = 0
    occupancy: int = 0
    window_in: int = 0
    window_out: int = 0
    last_window_ms: int | None = None

    def add(self, direction: str) -> None:
        """Count one crossing; occupancy never goes below zero."""
        if direction == "in":
            self.total_in += 1
            self.window_in += 1
            self.occupancy += 1
        else:
            self.total_out += 1
            self.window_out += 1
            self.occupancy = max(0, self.occupancy - 1)

    def window_start(self, now_ms: int) -> int:
        """The start of the window ``now_ms`` falls in, after the last one already sent."""
        start = now_ms - now_ms % WINDOW_MS
        if self.last_window_ms is not None and start <= self.last_window_ms:
            start = self.last_window_ms + WINDOW_MS
        return start

    def close_window(self, camera: str, start_ms: int) -> NewEvent:
        """The ``footfall.window`` event of the window starting at ``start_ms``; a new window."""
        payload = {
            "window_start": ms_to_iso(start_ms),
            "window_s": WINDOW_MS // 1000,
            "camera": camera,
            "in": self.window_in,
            "out": self.window_out,
            "occupancy": self.occupancy,
        }
        self.window_in = self.window_out = 0
        self.last_window_ms = start_ms
        return NewEvent(EVENT_KIND, payload, start_ms)

    def new_day(self, day: str) -> None:
        """Start today's totals (occupancy is reset by the closing-time job, not here)."""
        self.day = day
        self.total_in = self.total_out = 0


class CameraService:
    """Runs while the agent runs; started after the outbox, stopped before it."""

    def __init__(
        self, config: AgentConfig, db: Database, outbox: Outbox, jobs: JobScheduler
    ) -> None:
        self.camera = config.camera
        self.db = db
        self.outbox = outbox
        self.jobs = jobs
        self._zone = ZoneInfo(config.store.timezone)
        self.tally = FootfallTally(self._today())
        self._grabber: FrameGrabber | None = None
        self._counter: FootfallCounter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._status_tasks: set[asyncio.Task[None]] = set()
        self.available: bool | None = None
        self.detail = "not opened yet"
        # Whether the camera delivered during the open window: a window the camera was down
        # for entirely is not sent (a gap in the data, not a minute of zero visitors).
        self._window_live = False

    def _today(self) -> str:
        return datetime.now(self._zone).date().isoformat()

    def _last_closing(self) -> datetime:
        """The latest closing time at or before now, in the store's time zone."""
        now = datetime.now(self._zone)
        hour, minute = (int(part) for part in self.camera.closing_time.split(":"))
        closing = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        return closing if closing <= now else closing - timedelta(days=1)

    async def __aenter__(self) -> CameraService:
        if not self.camera.enabled:
            return self
        await self._load_state()
        loop = asyncio.get_running_loop()
        assert self.camera.source is not None

        def on_state(available: bool, detail: str) -> None:
            loop.call_soon_threadsafe(self._state_changed, available, detail)

        self._grabber = FrameGrabber(
            self.camera.source,
            self._count_frame,
            on_state,
            fps=self.camera.fps,
            pace=self.camera.pace,
            loop=self.camera.loop,
            on_restart=self._restart,
            backoff_cap_s=self.camera.reopen_max_s,
        )
        self._loop = loop
        self.jobs.daily("camera-occupancy-reset", self.camera.closing_time, self.reset_occupancy)
        self.jobs.minutely("footfall-minute", self._close_minute)
        self._grabber.start()
        log.info("camera %s: counting on %s", self.camera.name, describe_source(self.camera.source))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._grabber is None:
            return
        await asyncio.to_thread(self._grabber.stop)
        # Crossings the thread handed over just before it stopped run before this line.
        await asyncio.sleep(0)
        for task in list(self._status_tasks):
            with contextlib.suppress(DatabaseError):
                await task
        await self._emit_window(int(time.time() * 1000))

    # --- worker thread -------------------------------------------------------------------

    def _restart(self) -> None:
        """The picture may have jumped (reopened stream, file restarted): forget the tracks."""
        if self._counter is not None:
            self._counter.reset_tracks()

    def _count_frame(self, frame: Frame, t: float) -> None:
        """Runs on the capture thread: count, and hand crossings (never the frame) back."""
        size = (frame.shape[1], frame.shape[0])
        if self._counter is None or self._counter.source_size != size:
            assert self.camera.line is not None
            self._counter = FootfallCounter(
                self.camera.line, size, self.camera.fps, counting_settings(self.camera)
            )
        crossings = self._counter.process(frame, t)
        if crossings and self._loop is not None:
            self._loop.call_soon_threadsafe(self._count, crossings)

    # --- event loop ----------------------------------------------------------------------

    def _count(self, crossings: list[Crossing]) -> None:
        for crossing in crossings:
            self.tally.add(crossing.direction)
            log.debug("camera %s: one %s", self.camera.name, crossing.direction)

    def _state_changed(self, available: bool, detail: str) -> None:
        if available != self.available:
            if available:
                log.info("camera %s is available: %s", self.camera.name, detail)
            elif self.available is None:
                log.warning("camera %s is not available: %s", self.camera.name, detail)
            else:
                log.warning("camera %s dropped: %s", self.camera.name, detail)
        self.available, self.detail = available, detail
        self._window_live = self._window_live or available
        task = asyncio.create_task(self._save_status(available, detail), name="camera-status")
        self._status_tasks.add(task)
        task.add_done_callback(self._status_tasks.discard)

    async def _save_status(self, available: bool, detail: str) -> None:
        try:
            await record_device_status(self.db, "camera", [(self.camera.name, available, detail)])
        except DatabaseError as err:
            log.warning("camera %s: cannot record its status: %s", self.camera.name, err)

    async def _close_minute(self) -> str:
        """The per-minute job (at :00): emit the minute that just ended."""
        # A run late by more than a minute closes the latest minute: counts are never lost,
        # they land in the window that is closed.
        await self._emit_window(int(time.time() * 1000) - 1000)
        return (
            f"in {self.tally.total_in}, out {self.tally.total_out} today; "
            f"occupancy {self.tally.occupancy}"
        )

    async def _emit_window(self, now_ms: int) -> None:
        """Emit the window ``now_ms`` falls in (if the camera was up) and save the state."""
        start = self.tally.window_start(now_ms)
        event = self.tally.close_window(self.camera.name, start)
        if self._window_live:
            self.outbox.emit(event)
        self._window_live = bool(self.available)
        today = self._today()
        if today != self.tally.day:
            self.tally.new_day(today)
        await self._save_state()

    async def reset_occupancy(self) -> str:
        """The closing-time job: nobody is inside any more (missed exits are forgotten)."""
        before = self.tally.occupancy
        self.tally.occupancy = 0
        await self._save_state()
        return f"occupancy {before} -> 0"

    async def _load_state(self) -> None:
        async with self.db.reader.execute(
            "SELECT day, in_count, out_count, occupancy, last_window_ms, updated_at"
            " FROM camera_state WHERE camera = ?",
            (self.camera.name,),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return
        day, total_in, total_out, occupancy, last_window, updated_at = row
        self.tally.last_window_ms = last_window
        # Saved before the last closing time: the agent was not running when the reset job
        # was due (a PC switched off for the night), so nobody is inside any more.
        if datetime.fromisoformat(updated_at) >= self._last_closing():
            self.tally.occupancy = occupancy
        if day == self.tally.day:
            self.tally.total_in, self.tally.total_out = total_in, total_out

    async def _save_state(self) -> None:
        t = self.tally
        async with self.db.write(Durability.NORMAL) as conn:
            await conn.execute(
                "INSERT INTO camera_state (camera, day, in_count, out_count, occupancy,"
                " last_window_ms, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (camera) DO UPDATE SET day = excluded.day,"
                " in_count = excluded.in_count, out_count = excluded.out_count,"
                " occupancy = excluded.occupancy, last_window_ms = excluded.last_window_ms,"
                " updated_at = excluded.updated_at",
                (
                    self.camera.name,
                    t.day,
                    t.total_in,
                    t.total_out,
                    t.occupancy,
                    t.last_window_ms,
                    utc_iso(datetime.now(UTC)),
                ),
            )
