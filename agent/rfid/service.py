"""The RFID service the agent runs: readers → try-on sessions → ``tryon`` events; raw reads kept.

One :class:`~drivers.rfid.reader.LlrpReader` per configured reader, each a named task; their
callbacks run on the event loop and only do in-memory work (session tracking, per-second
sums of raw reads). One housekeeping task, every ``TICK_S``: advances the session timeline
(so visits end when nothing is read), resolves each completed session's product and emits its
``tryon`` event, writes raw-read sums once a second and reader availability when it changed.

Times: the agent's clock is the wall time at start plus the monotonic clock since, so a wall
clock step (NTP) neither stalls nor stretches sessions; reader timestamps are mapped onto it
per reader (see :class:`~agent.rfid.sessions.ReaderClock`).

Readers configured by their advertised name (``dnssd://NAME._llrp._tcp.local``) are looked up
over mDNS before every connection attempt, through one :class:`~agent.discovery.Discovery` the
service opens on ``[discovery] interfaces`` when it has such readers and closes after the
readers stopped. If mDNS cannot start, those readers stay unavailable with the reason.

Shutdown: readers stop first; the housekeeping task is told to stop and finishes the write it
may be waiting for (cancelling it there would lose the raw reads or sessions it holds); then
visits past the minimum dwell close as ``shutdown`` (see agent/rfid/sessions.py), their events
are emitted and raw reads flushed, before the outbox closes (the composition root stops this
service before the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sqlite3
import time
import uuid
from collections.abc import Sequence
from types import TracebackType

from agent.config import AgentConfig
from agent.db import Database, DatabaseError, StorageFull
from agent.devicestatus import record_device_status
from agent.discovery import Discovery, DiscoveryError
from agent.jobs import JobScheduler
from agent.outbox import NewEvent, Outbox, ms_to_iso
from agent.rfid.config import LLRP_PORT
from agent.rfid.products import ProductLookup
from agent.rfid.rawreads import RawReadLog, drop_oldest_reads, prune_reads
from agent.rfid.sessions import ReaderClock, SessionSettings, TryOn, TryOnTracker
from drivers.rfid.reads import TagRead

log = logging.getLogger(__name__)

TICK_S = 0.25
RAW_FLUSH_S = 1.0
RETENTION_JOB = "rfid-raw-retention"


class AgentClock:
    """Wall time at start + monotonic time since, in Unix microseconds."""

    def __init__(self) -> None:
        self._wall0 = time.time_ns() // 1000
        self._mono0 = time.monotonic_ns() // 1000

    def now_us(self) -> int:
        """The current time on the agent's timeline."""
        return self._wall0 + time.monotonic_ns() // 1000 - self._mono0


def tryon_payload(
    session: TryOn, session_id: str, gtin: str | None, sku: str | None
) -> dict[str, object]:
    """The ``tryon`` v1 event payload of a completed session (config/schemas, events.md)."""
    return {
        "session_id": session_id,
        "reader": session.reader,
        "room": session.room,
        "epc": session.epc.hex().upper(),
        "gtin": gtin,
        "sku": sku,
        "started_at": ms_to_iso(session.started_us // 1000),
        "ended_at": ms_to_iso(session.ended_us // 1000),
        "dwell_s": round(max(session.dwell_us, 0) / 1e6, 3),
        "closed_by": session.closed_by,
    }


class RfidService:
    """Runs while the agent runs; started after the outbox, stopped before it."""

    def __init__(
        self, config: AgentConfig, db: Database, outbox: Outbox, jobs: JobScheduler
    ) -> None:
        self.config = config
        self.db = db
        self.outbox = outbox
        self.jobs = jobs
        rfid = config.rfid
        rooms = {
            (reader.name, antenna): room
            for reader in rfid.readers
            for antenna, room in reader.room_of.items()
        }
        self._clock = AgentClock()
        self.tracker = TryOnTracker(
            rooms,
            SessionSettings.from_seconds(
                rfid.window_s, rfid.min_dwell_s, rfid.end_after_s, rfid.max_duration_s
            ),
        )
        self.raw = RawReadLog()
        self._reader_clocks = {reader.name: ReaderClock() for reader in rfid.readers}
        self._finished: list[TryOn] = []
        self._status_due: dict[str, tuple[bool, str]] = {
            r.name: (False, "not connected yet") for r in rfid.readers
        }
        self._products = ProductLookup(db.reader)
        self._readers: list[asyncio.Task[None]] = []
        self._mdns: Discovery | None = None
        self._mdns_error = "mDNS is not running"
        self._housekeeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.sessions_emitted = 0
        self.raw_rows_dropped = 0  # per-second rows deleted early to make room
        self._storage_full = False

    async def __aenter__(self) -> RfidService:
        rfid = self.config.rfid
        if not rfid.readers:
            return self
        # sllurp loads only when readers are configured.
        from drivers.rfid.reader import LlrpReader

        self.jobs.every(RETENTION_JOB, 3600, self._prune, run_now=True)
        llrp_readers = []
        for reader in rfid.readers:
            name = reader.service_name
            # A dnssd:// reader's address comes from the look-up; the name stands in until then.
            host, port = reader.address if name is None else (name, LLRP_PORT)
            resolve = None if name is None else functools.partial(self._resolve, name)
            driver = LlrpReader(
                reader.name,
                host,
                port,
                antennas=reader.antennas,
                tx_power_dbm=reader.tx_power_dbm,
                session=reader.session,
                search_mode=reader.search_mode if reader.impinj_extensions else None,
                tag_population=reader.tag_population,
                keepalive_s=reader.keepalive_s,
                on_reads=functools.partial(self._on_reads, reader.name),
                on_state=functools.partial(self._on_state, reader.name),
                resolve=resolve,
            )
            llrp_readers.append(driver)
        if any(reader.service_name is not None for reader in rfid.readers):
            await self._open_mdns()
        for driver in llrp_readers:
            self._readers.append(asyncio.create_task(driver.run(), name=f"rfid-{driver.name}"))
        self._housekeeper = asyncio.create_task(self._housekeeping(), name="rfid-housekeeping")
        log.info(
            "rfid: %d reader(s), %d room(s)",
            len(rfid.readers),
            sum(len(set(r.room_of.values())) for r in rfid.readers),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._housekeeper is None:
            return
        for task in self._readers:
            task.cancel()
        for task in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._mdns is not None:
            mdns, self._mdns = self._mdns, None
            await mdns.__aexit__(None, None, None)
        self._stopping.set()
        await self._housekeeper
        self._readers.clear()
        self._housekeeper = None
        self._finished.extend(self.tracker.close_all(self._clock.now_us()))
        try:
            await self._emit_finished()
            await self.raw.flush(self.db)
        except DatabaseError:
            log.exception("rfid: could not save the last reads and sessions at shutdown")
        log.info(
            "rfid stopped: %d reads received, %d stored, %d dropped (not written), "
            "%d per-second rows deleted early for space, %d try-on sessions",
            self.raw.received,
            self.raw.written,
            self.raw.dropped,
            self.raw_rows_dropped,
            self.sessions_emitted,
        )

    async def _open_mdns(self) -> None:
        """Start the mDNS look-ups of readers named by ``dnssd://``; a failure is logged once."""
        mdns = Discovery(self.config.discovery.interfaces)
        try:
            self._mdns = await mdns.__aenter__()
        except DiscoveryError as err:
            self._mdns_error = f"mDNS could not start: {err}"
            log.warning("rfid: readers named by dnssd:// cannot be found: %s", err)

    async def _resolve(self, service_name: str) -> tuple[str, int]:
        """Host and port a reader advertises under ``service_name`` now."""
        if self._mdns is None:
            raise DiscoveryError(self._mdns_error)
        return await self._mdns.resolve(service_name, self.config.discovery.resolve_timeout_s)

    def _on_reads(self, reader: str, reads: Sequence[TagRead]) -> None:
        if not reads:
            return
        latest = max(read.seen_at_us for read in reads)
        offset = self._reader_clocks[reader].offset_us(latest, self._clock.now_us())
        self.raw.add(reader, reads, offset)
        finished = self.tracker.observe(reader, reads, offset)
        if finished:
            self._finished.extend(finished)

    def _on_state(self, reader: str, available: bool, detail: str) -> None:
        # The driver calls this only on a change, and logs it (WARNING on drop, INFO on return).
        self._status_due[reader] = (available, detail)
        if available:
            self._reader_clocks[reader].reset()
            self.tracker.reader_up(reader, self._clock.now_us())
        else:
            self.tracker.reader_down(reader)

    async def _housekeeping(self) -> None:
        next_flush = time.monotonic() + RAW_FLUSH_S
        while not self._stopping.is_set():
            try:
                self._finished.extend(self.tracker.tick(self._clock.now_us()))
                await self._emit_finished()
                if self._status_due:
                    await self._write_status()
                if time.monotonic() >= next_flush:
                    next_flush = time.monotonic() + RAW_FLUSH_S
                    await self.raw.flush(self.db)
                    if self._storage_full:
                        self._storage_full = False
                        log.info(
                            "rfid: storage available again; %d raw reads were dropped and "
                            "%d per-second rows deleted early",
                            self.raw.dropped,
                            self.raw_rows_dropped,
                        )
            except StorageFull:
                await self._make_room()
            except (DatabaseError, sqlite3.Error):
                # Raw reads of this second are lost (counted); sessions are in memory and stay.
                log.exception("rfid: could not write raw reads or reader status")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), TICK_S)

    async def _make_room(self) -> None:
        """The disk is full: raw reads go first, oldest first, so sales keep their space."""
        if not self._storage_full:
            self._storage_full = True
            log.warning("rfid: storage full: raw reads are dropped, oldest first, and counted")
        try:
            self.raw_rows_dropped += await drop_oldest_reads(self.db)
        except DatabaseError as err:
            log.debug("rfid: could not drop old raw reads yet: %s", err)

    async def _emit_finished(self) -> None:
        finished, self._finished = self._finished, []
        for session in finished:
            product = await self._products.resolve(session.epc)
            payload = tryon_payload(session, uuid.uuid4().hex, product.gtin, product.sku)
            self.outbox.emit(NewEvent("tryon", payload, session.ended_us // 1000))
            self.sessions_emitted += 1
            log.debug(
                "try-on in %s: %s for %.0f s (%s)",
                session.room,
                product.sku or product.epc,
                session.dwell_us / 1e6,
                session.closed_by,
            )

    async def _write_status(self) -> None:
        due, self._status_due = self._status_due, {}
        try:
            await record_device_status(
                self.db, "rfid", ((name, up, detail) for name, (up, detail) in due.items())
            )
        except DatabaseError:
            for name, state in due.items():
                self._status_due.setdefault(name, state)
            raise

    async def _prune(self) -> str:
        days = self.config.rfid.raw_read_retention_days
        cutoff = self._clock.now_us() // 1_000_000 - days * 86400
        deleted = await prune_reads(self.db, cutoff)
        return f"pruned {deleted:,} per-second read rows older than {days} days"
