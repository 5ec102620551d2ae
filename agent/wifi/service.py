"""The Wi-Fi service the agent runs: probe requests in, one ``wifi.window`` event per minute out.

Pipeline (all analytics on the event loop; parsing and capture in threads)::

    capture thread (scapy, monitor mode) or pcap replay
      -> ProbeParser (MAC -> keyed hash at once) -> DeviceGrouper -> FixedLearner
      -> WindowAggregator (1 min) -> outbox "wifi.window"
                                  -> Rollup (10 min, 1 h) -> wifi_windows table

Live capture: windows close on the wall clock (a one-second tick), so quiet minutes are
reported too. Capture errors (no interface, no monitor mode, no permission) are logged once,
written to ``device_status``, and retried with exponential backoff up to ``retry_max_s``;
recovery is logged once when frames flow again.

Replay (``pcap = "..."``, for the demo): the capture is shifted in time so that each frame
is dated when it is played (speed 1), or earlier (faster); never in the future. Speed 0
replays at once, the capture ending now.

Keys: the device key rotates at local midnight (job ``wifi-key-rotation``); every visit ends
then. Devices learned fixed are remembered by their non-rotating tag (table
``wifi_fixed_devices``) and excluded from the first frame on the next days.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

from agent.config import AgentConfig
from agent.db import Database, DatabaseError, Durability
from agent.devicestatus import record_device_status
from agent.jobs import JobScheduler
from agent.outbox import NewEvent, Outbox, ms_to_iso
from agent.wifi.calibration import (
    CalibrationError,
    OccupancyModel,
    load_model,
    reference_model,
)
from agent.wifi.devices import Device, DeviceGrouper, FixedLearner
from agent.wifi.privacy import DeviceHasher, WifiSecretError, fixed_tag, load_or_create_secret
from agent.wifi.replay import Frame, read_capture
from agent.wifi.windows import Rollup, RollupRow, WindowAggregator, WindowSettings, WindowStats
from drivers.wifi.capture import CaptureError, ProbeCapture
from drivers.wifi.probe import ProbeParser, ProbeRequest

log = logging.getLogger(__name__)

EVENT_KIND = "wifi.window"
WINDOW_S = 60  # fixed by the wifi.window v1 contract
ROLLUP_PERIODS_S = (600, 3600)

_UPSERT_ROLLUP = """
INSERT INTO wifi_windows (sniffer, period_s, start_ms, devices, visitors, passers_by, occupancy,
    dwell_hist, fixed_excluded, frames, malformed, minutes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (sniffer, period_s, start_ms) DO UPDATE SET devices = excluded.devices,
    visitors = excluded.visitors, passers_by = excluded.passers_by,
    occupancy = excluded.occupancy, dwell_hist = excluded.dwell_hist,
    fixed_excluded = excluded.fixed_excluded, frames = excluded.frames,
    malformed = excluded.malformed, minutes = excluded.minutes
"""
_UPSERT_FIXED = """
INSERT INTO wifi_fixed_devices (tag, first_day, last_day, days) VALUES (?, ?, ?, 1)
ON CONFLICT (tag) DO UPDATE SET days = days + (last_day <> excluded.last_day),
    last_day = excluded.last_day
"""
_UPSERT_SEEN = """
INSERT INTO wifi_seen_devices (device, first_day, last_day) VALUES (?, ?, ?)
ON CONFLICT (device) DO UPDATE SET last_day = excluded.last_day
"""


def window_payload(stats: WindowStats, sniffer: str) -> dict[str, Any]:
    """The ``wifi.window`` v1 payload of a window (docs: /tmp/briefs/events.md)."""
    return {
        "window_start": ms_to_iso(stats.start_us // 1000),
        "window_s": stats.window_s,
        "sniffer": sniffer,
        "devices": stats.devices,
        "visitors": stats.visitors,
        "passers_by": stats.passers_by,
        "occupancy": stats.occupancy,
        "dwell_hist": list(stats.dwell_hist),
        "new_devices": stats.new_devices,
        "repeat_devices": stats.repeat_devices,
        "fixed_excluded": stats.fixed_excluded,
        "frames": stats.frames,
        "malformed": stats.malformed,
    }


def _now_us() -> int:
    return time.time_ns() // 1000


class WifiService:
    """Runs while the agent runs; started after the outbox, stopped before it."""

    def __init__(
        self, config: AgentConfig, db: Database, outbox: Outbox, jobs: JobScheduler
    ) -> None:
        self.config = config
        self.db = db
        self.outbox = outbox
        self.jobs = jobs
        self.cfg = config.wifi
        self._zone = ZoneInfo(config.store.timezone)
        self._task: asyncio.Task[None] | None = None
        self._hasher: DeviceHasher | None = None
        self._parser: ProbeParser | None = None
        self._grouper = DeviceGrouper()
        self._learner = FixedLearner(
            fraction=self.cfg.fixed_fraction, horizon_slots=round(self.cfg.fixed_horizon_h * 6)
        )
        self._aggregator: WindowAggregator | None = None
        self._rollups = [Rollup(period) for period in ROLLUP_PERIODS_S]
        self._seen_before: set[bytes] = set()
        self._today = date.today()
        self._available: bool | None = None
        self._malformed_seen = 0
        self._closed: list[WindowStats] = []
        self._flowing = False
        self.model = OccupancyModel.uncalibrated()
        self.windows_emitted = 0

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> WifiService:
        if not self.cfg.enabled:
            return self
        try:
            secret = await asyncio.to_thread(load_or_create_secret, self.config.store.data_dir)
        except WifiSecretError as err:
            # Without the secret nothing may be hashed: no sniffing at all, said loudly.
            await self._set_status(False, str(err))
            return self
        self.model = await self._load_model()
        self._today = datetime.now(self._zone).date()
        self._hasher = DeviceHasher(secret, self._today, stable=self.cfg.stable_keys)
        self._parser = ProbeParser(self._hasher)
        await self._load_memory()
        settings = WindowSettings(
            window_s=WINDOW_S,
            feature_s=max(self.model.window_s, WINDOW_S),
            visit_gap_s=self.cfg.visit_gap_s,
            visitor_rssi_dbm=self.cfg.visitor_rssi_dbm,
            visitor_dwell_s=self.cfg.visitor_dwell_s,
            near_rssi_dbm=self.model.near_rssi_dbm,
        )
        self._aggregator = WindowAggregator(
            settings,
            self._grouper,
            is_fixed=self._is_fixed,
            estimate=self.model,
            is_repeat=self._is_repeat if self.cfg.stable_keys else None,
        )
        self.jobs.daily("wifi-key-rotation", "00:00", self._rotate)
        if self.cfg.pcap is not None:
            self._task = asyncio.create_task(self._replay(), name="wifi-replay")
        else:
            self._task = asyncio.create_task(self._live(), name="wifi-capture")
        log.info(
            "wifi sniffer %s: %s, occupancy %s",
            self.cfg.sniffer,
            f"replaying {self.cfg.pcap}" if self.cfg.pcap else f"interface {self.cfg.interface}",
            "calibrated" if self.model.calibrated else "uncalibrated",
        )
        return self

    async def _load_model(self) -> OccupancyModel:
        """The store's calibration, else the factory one (said in the log), else none."""
        if self.cfg.calibration is not None:
            try:
                return await asyncio.to_thread(load_model, self.cfg.calibration)
            except CalibrationError as err:
                log.warning("wifi: %s; using the factory calibration instead", err)
        try:
            model = await asyncio.to_thread(reference_model)
        except CalibrationError as err:
            log.warning("wifi: %s; occupancy is uncalibrated", err)
            return OccupancyModel.uncalibrated()
        log.info("wifi: occupancy from the factory calibration; `wifi calibrate` fits this store")
        return model

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _load_memory(self) -> None:
        async with self.db.reader.execute("SELECT tag FROM wifi_fixed_devices") as cur:
            self._learner.remember(bytes(row[0]) for row in await cur.fetchall())
        if self.cfg.stable_keys:
            async with self.db.reader.execute("SELECT device FROM wifi_seen_devices") as cur:
                self._seen_before = {bytes(row[0]) for row in await cur.fetchall()}

    # -- device judgements ---------------------------------------------------------------

    def _is_fixed(self, device: Device) -> bool:
        tag = None if device.randomised else fixed_tag(device.key)
        return self._learner.is_fixed(device.key, tag)

    def _is_repeat(self, device: Device) -> bool:
        return device.key in self._seen_before

    async def _rotate(self) -> str:
        """The daily job: new device key, every visit ends, presence history restarts."""
        if self._hasher is None or self._aggregator is None:
            return "no sniffer"
        self._today = datetime.now(self._zone).date()
        self._hasher.rotate(self._today)
        ended = len(self._grouper.expire_all())
        self._learner.restart()
        pruned = await self._prune(self._today - timedelta(days=self.cfg.retention_days))
        if self.cfg.stable_keys:
            await self._load_memory()
        return (
            f"device key for {self._today.isoformat()}; {ended} visit(s) ended; "
            f"{pruned} row(s) older than {self.cfg.retention_days} days pruned"
        )

    async def _prune(self, before: date) -> int:
        """Bounded storage: roll-ups and seen-before identifiers older than ``before`` go."""
        start = datetime.combine(before, datetime.min.time(), self._zone)
        async with self.db.write(Durability.NORMAL) as conn:
            windows = await conn.execute(
                "DELETE FROM wifi_windows WHERE start_ms < ?", (int(start.timestamp() * 1000),)
            )
            seen = await conn.execute(
                "DELETE FROM wifi_seen_devices WHERE last_day < ?", (before.isoformat(),)
            )
            return windows.rowcount + seen.rowcount

    # -- sources -------------------------------------------------------------------------

    async def _replay(self) -> None:
        assert self.cfg.pcap is not None
        assert self._hasher is not None
        path = self.cfg.pcap
        try:
            frames = await asyncio.to_thread(read_capture, path, self._hasher)
        except (OSError, ValueError) as err:
            await self._set_status(False, f"cannot replay {path}: {err}")
            return
        frames.sort(key=lambda f: (f.ts_us, f.index))  # some captures step back in time
        await self._set_status(True, f"replaying {path.name} ({len(frames)} frames)")
        if frames:
            await self._play(frames)
        await self._handle(self._aggregator.finish() if self._aggregator else [])
        await self._set_status(True, f"replay of {path.name} finished")
        log.info(
            "wifi sniffer %s: replay finished, %d windows", self.cfg.sniffer, self.windows_emitted
        )

    async def _play(self, frames: Sequence[Frame]) -> None:
        assert self._aggregator is not None
        speed = self.cfg.speed
        first, last = frames[0].ts_us, frames[-1].ts_us
        start = _now_us()
        # Date each frame when it is played (speed 1) or earlier, never in the future.
        offset = start + (int((last - first) / speed) if speed else 0) - last
        offset -= offset % 3_600_000_000  # keep the capture's alignment to windows and hours
        began = time.monotonic()
        for i, frame in enumerate(frames):
            if speed:
                due = (frame.ts_us - first) / speed / 1e6 - (time.monotonic() - began)
                if due > 0.005:
                    await asyncio.sleep(due)
            elif i % 2000 == 0:
                await asyncio.sleep(0)
            ts_us = frame.ts_us + offset
            if frame.probe is None:
                await self._handle(self._aggregator.add_malformed(frame.malformed, ts_us))
            else:
                await self._handle(self._ingest(dataclasses.replace(frame.probe, ts_us=ts_us)))

    async def _live(self) -> None:
        assert self._parser is not None
        assert self.cfg.interface is not None
        ticker = asyncio.create_task(self._tick(), name="wifi-window-clock")
        try:
            delay = 1.0
            while True:
                capture = ProbeCapture(
                    self.cfg.interface,
                    self.cfg.channels,
                    self.cfg.dwell_ms / 1000,
                    self._parser,
                    self._on_live_probe,
                )
                self._flowing = False
                try:
                    await capture.run()
                    detail = f"capture on {self.cfg.interface} stopped"
                except (CaptureError, OSError) as err:
                    detail = str(err)
                if self._flowing:
                    delay = 1.0
                await self._set_status(False, detail)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.cfg.retry_max_s)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    def _on_live_probe(self, probe: ProbeRequest) -> None:
        """Called on the event loop for each captured probe; windows close on the tick."""
        self._flowing = True
        self._closed += self._ingest(probe)

    async def _tick(self) -> None:
        assert self._parser is not None
        assert self._aggregator is not None
        while True:
            await asyncio.sleep(1.0)
            now = _now_us()
            malformed = self._parser.stats.malformed
            closed, self._closed = self._closed, []
            if malformed > self._malformed_seen:
                closed += self._aggregator.add_malformed(malformed - self._malformed_seen, now)
                self._malformed_seen = malformed
            closed += self._aggregator.advance(now)
            await self._handle(closed)
            if self._flowing and self._available is not True:
                await self._set_status(True, f"capturing on {self.cfg.interface}")

    # -- analytics -----------------------------------------------------------------------

    def _ingest(self, probe: ProbeRequest) -> list[WindowStats]:
        """Group one probe and count it; returns the windows that closed before it."""
        assert self._aggregator is not None
        return self._aggregator.ingest(probe, self._see)

    def _see(self, device: Device, ts_us: int) -> None:
        self._learner.see(device.key, ts_us)

    async def _handle(self, closed: list[WindowStats]) -> None:
        if not closed:
            return
        rows: list[RollupRow] = []
        for stats in closed:
            self.outbox.emit(
                NewEvent(
                    EVENT_KIND, window_payload(stats, self.cfg.sniffer), stats.start_us // 1000
                )
            )
            self.windows_emitted += 1
            for rollup in self._rollups:
                rows += rollup.add(stats)
        rows += [row for r in self._rollups if (row := r.current()) is not None]
        await self._store(rows, closed)

    async def _store(self, rows: list[RollupRow], closed: list[WindowStats]) -> None:
        day = self._today.isoformat()
        present = self._grouper.devices()
        # Tags are kept only for global addresses learned fixed by presence (not tag).
        present_global = {d.key for d in present if not d.randomised}
        fixed_tags = [
            (tag, day, day)
            for k in self._learner.fixed_keys()
            if k in present_global and (tag := fixed_tag(k)) not in self._learner.known_tags
        ]
        seen: list[tuple[bytes, str, str]] = []
        if self.cfg.stable_keys:
            # Devices counted in the closed windows: a visit is "repeat" once its key is here.
            numbers = frozenset().union(*(w.device_numbers for w in closed))
            seen = [(d.key, day, day) for d in present if d.number in numbers]
        try:
            async with self.db.write(Durability.NORMAL) as conn:
                await conn.executemany(
                    _UPSERT_ROLLUP,
                    [
                        (
                            self.cfg.sniffer,
                            r.period_s,
                            r.start_us // 1000,
                            r.devices,
                            r.visitors,
                            r.passers_by,
                            r.occupancy,
                            json.dumps(list(r.dwell_hist)),
                            r.fixed_excluded,
                            r.frames,
                            r.malformed,
                            r.minutes,
                        )
                        for r in rows
                    ],
                )
                if fixed_tags:
                    await conn.executemany(_UPSERT_FIXED, fixed_tags)
                if seen:
                    await conn.executemany(_UPSERT_SEEN, seen)
        except DatabaseError as err:
            log.warning("wifi: cannot store roll-ups: %s", err)
            return
        self._learner.remember(tag for tag, _, _ in fixed_tags)
        self._seen_before.update(key for key, _, _ in seen)

    async def _set_status(self, available: bool, detail: str) -> None:
        if available != self._available:
            if available:
                log.info("wifi sniffer %s available: %s", self.cfg.sniffer, detail)
            else:
                log.warning("wifi sniffer %s unavailable: %s", self.cfg.sniffer, detail)
        else:
            log.debug("wifi sniffer %s: %s", self.cfg.sniffer, detail)
        self._available = available
        try:
            await record_device_status(self.db, "wifi", [(self.cfg.sniffer, available, detail)])
        except DatabaseError as err:
            log.warning("wifi: cannot record device status: %s", err)
