"""Scheduled jobs of the agent (APScheduler 3, on the agent's event loop).

Services register their periodic work here (retention, roll-ups, key rotation, status
polling) instead of running loops of their own, so every job's last run and outcome is in
one place: the ``job_runs`` table, which ``storelink-agent status`` reads. A job is a
coroutine function returning an optional one-line detail ("pruned 1,204 reads"); an
exception or a timeout marks the run failed, is logged once (and once more when the job
succeeds again), and the job runs again at its next time.

The agent's own jobs are at the end of this module (:func:`register_agent_jobs`):

- ``outbox-retention`` (hourly): deletes events the cloud acknowledged more than
  ``[outbox] retention_days`` ago, then checkpoints the WAL;
- ``printer-status`` (every 30 s): publishes what the print workers saw when they last polled;
- ``heartbeat`` (every 30 s): the agent's liveness in ``store_meta``, shown by ``status``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.db import Database, DatabaseError, Durability
from agent.outbox import utc_iso
from agent.printing import PRINTER_STATUS_UPSERT

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[str | None]]

DAILY_TIMEOUT_S = 15 * 60.0

_START = """
INSERT INTO job_runs (name, started_at, finished_at, outcome, detail, runs, failures)
VALUES (?, ?, NULL, 'running', '', 0, 0)
ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, outcome = 'running'
"""
_FINISH = """
UPDATE job_runs SET finished_at = ?, outcome = ?, detail = ?, runs = runs + 1,
    failures = failures + ?
WHERE name = ?
"""
JOB_RUNS_SQL = (
    "SELECT name, started_at, finished_at, outcome, detail, runs, failures "
    "FROM job_runs ORDER BY name"
)

# APScheduler's executor logs every run at INFO ("Running job ...", "... executed
# successfully"): twice a minute per job in the journal. Its records go to this logger,
# kept at WARNING; run_once logs what is worth knowing (a job failing, and recovering).
_RUNS_LOG = logging.getLogger(f"{__name__}.apscheduler")


class _QuietExecutor(AsyncIOExecutor):  # type: ignore[misc]  # apscheduler is untyped
    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._logger = _RUNS_LOG


def _now() -> str:
    return utc_iso(datetime.now(UTC))


def _parse_hh_mm(at: str) -> tuple[int, int]:
    hour_text, sep, minute_text = at.partition(":")
    if sep and hour_text.isdigit() and minute_text.isdigit():
        hour, minute = int(hour_text), int(minute_text)
        if hour < 24 and minute < 60:
            return hour, minute
    raise ValueError(f"expected a time of day as HH:MM, got {at!r}")


class JobScheduler:
    """Runs registered jobs on the event loop; records each run in ``job_runs``."""

    def __init__(self, db: Database, timezone: str = "UTC") -> None:
        self._db = db
        self._timezone = timezone
        _RUNS_LOG.setLevel(logging.WARNING)
        self._scheduler = AsyncIOScheduler(
            timezone=timezone, logger=_RUNS_LOG, executors={"default": _QuietExecutor()}
        )
        self._jobs: dict[str, tuple[Job, float]] = {}
        self._failing: set[str] = set()
        self._running: set[asyncio.Task[Any]] = set()

    @property
    def names(self) -> frozenset[str]:
        """The registered jobs' names."""
        return frozenset(self._jobs)

    def every(
        self,
        name: str,
        seconds: float,
        job: Job,
        *,
        run_now: bool = False,
        timeout_s: float | None = None,
    ) -> None:
        """Run ``job`` every ``seconds`` (first run after one period unless ``run_now``).

        A run that takes longer than ``timeout_s`` (default: the period) is cancelled and
        marked failed, so a hung job cannot stop its own next runs.
        """
        if seconds <= 0:
            raise ValueError(f"job {name!r}: the period must be positive, got {seconds}")
        first = datetime.now(UTC) if run_now else None
        trigger = IntervalTrigger(seconds=seconds, timezone=self._timezone)
        self._add(name, job, trigger, first, timeout_s or seconds)

    def minutely(self, name: str, job: Job, *, second: int = 0) -> None:
        """Run ``job`` at ``second`` past every minute of the clock (per-minute roll-ups)."""
        if not 0 <= second < 60:
            raise ValueError(f"job {name!r}: second must be 0-59, got {second}")
        trigger = CronTrigger(second=second, timezone=self._timezone)
        self._add(name, job, trigger, None, 60.0)

    def daily(self, name: str, at: str, job: Job, *, timeout_s: float = DAILY_TIMEOUT_S) -> None:
        """Run ``job`` every day at ``HH:MM`` in the store's time zone."""
        hour, minute = _parse_hh_mm(at)
        trigger = CronTrigger(hour=hour, minute=minute, timezone=self._timezone)
        self._add(name, job, trigger, None, timeout_s)

    def _add(
        self, name: str, job: Job, trigger: Any, first: datetime | None, timeout_s: float
    ) -> None:
        if name in self._jobs:
            raise ValueError(f"job {name!r} is registered twice")
        self._jobs[name] = (job, timeout_s)

        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._running.add(task)
            try:
                await self.run_now(name)
            finally:
                self._running.discard(task)

        # APScheduler 3 reads next_run_time=None as "add the job paused": pass it only to run
        # the job at once, and let the trigger decide otherwise.
        when: dict[str, datetime] = {} if first is None else {"next_run_time": first}
        self._scheduler.add_job(
            run,
            trigger,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            **when,
        )

    async def run_now(self, name: str) -> bool:
        """Run a registered job at once (outside its schedule); True when it succeeded."""
        job, timeout_s = self._jobs[name]
        return await self.run_once(name, job, timeout_s=timeout_s)

    async def run_once(self, name: str, job: Job, *, timeout_s: float | None = None) -> bool:
        """Run one job now, recording its outcome; True when it succeeded."""
        await self._record(_START, (name, _now()))
        began = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                detail = await job() or ""
        except TimeoutError:
            return await self._failed(name, f"did not finish within {timeout_s:g} s", None)
        except asyncio.CancelledError:
            # The agent is stopping: leave no run marked 'running' forever.
            await asyncio.shield(self._record(_FINISH, (_now(), "failed", "interrupted", 1, name)))
            raise
        except Exception as err:
            return await self._failed(name, str(err) or type(err).__name__, err)
        if name in self._failing:
            log.info("job %s succeeded again: %s", name, detail)
            self._failing.discard(name)
        log.debug("job %s done in %.3f s: %s", name, time.monotonic() - began, detail)
        await self._record(_FINISH, (_now(), "ok", detail[:500], 0, name))
        return True

    async def _failed(self, name: str, message: str, err: Exception | None) -> bool:
        if name not in self._failing:
            log.warning("job %s failed: %s", name, message, exc_info=err)
        else:
            log.debug("job %s failed again: %s", name, message)
        self._failing.add(name)
        await self._record(_FINISH, (_now(), "failed", message[:500], 1, name))
        return False

    async def _record(self, sql: str, params: tuple[Any, ...]) -> None:
        try:
            async with self._db.write(Durability.NORMAL) as conn:
                await conn.execute(sql, params)
        except DatabaseError as err:
            log.warning("cannot record a job run: %s", err)

    async def __aenter__(self) -> JobScheduler:
        self._scheduler.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._scheduler.shutdown(wait=False)
        # Runs still going would outlive the database they write to: stop them here.
        pending = list(self._running)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)


# -- the agent's own jobs -------------------------------------------------------------------

RETENTION_EVERY_S = 3600.0
RETENTION_BATCH = 5000
STATUS_EVERY_S = 30.0
HEARTBEAT_EVERY_S = 30.0
ALIVE_KEY = "agent_alive_at"
CHECKPOINT_BUSY_MS = 1000


class PrinterHealth(Protocol):
    """What the printer-status job reads of a print worker."""

    @property
    def name(self) -> str: ...

    available: bool | None
    detail: str


async def prune_sent_events(db: Database, older_than_days: int, now: datetime) -> int:
    """Delete events the cloud acknowledged before ``now - older_than_days``; how many.

    Sale events stay: the ``sales`` table points at them, and sales are never dropped.
    Deleting in batches keeps each write transaction short, so a sale committing meanwhile
    waits milliseconds, not for the whole purge.
    """
    cutoff = utc_iso(now - timedelta(days=older_than_days))
    total = 0
    while True:
        async with db.write(Durability.NORMAL) as conn:
            cursor = await conn.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox"
                " WHERE sent_at IS NOT NULL AND sent_at < ? AND kind <> 'sale'"
                " AND seq NOT IN (SELECT event_seq FROM sales) LIMIT ?)",
                (cutoff, RETENTION_BATCH),
            )
            deleted = cursor.rowcount
        total += deleted
        if deleted < RETENTION_BATCH:
            return total
        await asyncio.sleep(0)  # let sales and the API in between batches


def checkpoint_wal(path: Path) -> str:
    """Copy the WAL into the database and truncate it; blocking, run it in a thread.

    The sync daemon (another process) reads and writes the same file. A PASSIVE checkpoint
    first copies what it can without waiting for anyone; TRUNCATE then waits at most
    ``CHECKPOINT_BUSY_MS`` for readers and writers, and if they are still busy it simply
    reports so and the next run tries again. VACUUM is not used: it rewrites the whole file
    under a write lock, stalling checkout meanwhile; pages freed by the purge are reused by
    new events instead, which keeps the file's size bounded.
    """
    conn = sqlite3.connect(path, timeout=CHECKPOINT_BUSY_MS / 1000, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        busy, wal_pages, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    if busy:
        return f"WAL checkpoint deferred ({wal_pages} pages; the database was busy)"
    return "WAL checkpointed and truncated"


async def outbox_retention(db: Database, older_than_days: int) -> str:
    """The outbox-retention job: purge acknowledged events, then checkpoint the WAL."""
    pruned = await prune_sent_events(db, older_than_days, datetime.now(UTC))
    checkpoint = await asyncio.to_thread(checkpoint_wal, db.path)
    return f"deleted {pruned} acknowledged events older than {older_than_days} days; {checkpoint}"


async def heartbeat(db: Database) -> str:
    """The heartbeat job: record that the agent is alive (``status`` shows it)."""
    now = utc_iso(datetime.now(UTC))
    async with db.write(Durability.NORMAL) as conn:
        await conn.execute(
            "INSERT INTO store_meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (ALIVE_KEY, now),
        )
    return f"alive at {now}"


async def printer_status(db: Database, printers: Mapping[str, PrinterHealth]) -> str:
    """The printer-status job: store each printer's last polled state for ``status``.

    The print workers poll idle printers every 30 s themselves (``agent.printing``) and save
    changes; this job writes every printer's state with the time, so ``status`` (another
    process) tells a printer checked a moment ago from one whose worker stopped reporting.
    """
    now = utc_iso(datetime.now(UTC))
    rows = [
        (p.name, int(p.available), p.detail, now)
        for p in printers.values()
        if p.available is not None
    ]
    if rows:
        async with db.write(Durability.NORMAL) as conn:
            await conn.executemany(PRINTER_STATUS_UPSERT, rows)
    down = sorted(p.name for p in printers.values() if p.available is False)
    unknown = sorted(p.name for p in printers.values() if p.available is None)
    parts = [f"{len(printers) - len(down) - len(unknown)} of {len(printers)} printers available"]
    if down:
        parts.append(f"not available: {', '.join(down)}")
    if unknown:
        parts.append(f"not checked yet: {', '.join(unknown)}")
    return "; ".join(parts)


def register_agent_jobs(
    jobs: JobScheduler,
    db: Database,
    printers: Mapping[str, PrinterHealth],
    retention_days: int,
) -> None:
    """Register the agent's own jobs (devices register theirs in their services)."""

    async def retention() -> str:
        return await outbox_retention(db, retention_days)

    async def beat() -> str:
        return await heartbeat(db)

    async def publish() -> str:
        return await printer_status(db, printers)

    jobs.every("outbox-retention", RETENTION_EVERY_S, retention, timeout_s=15 * 60)
    jobs.every("heartbeat", HEARTBEAT_EVERY_S, beat, run_now=True)
    if printers:
        jobs.every("printer-status", STATUS_EVERY_S, publish)
