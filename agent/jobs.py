"""Scheduled jobs of the agent (APScheduler 3, on the agent's event loop).

Services register their periodic work here (retention, roll-ups, key rotation, status
polling) instead of running loops of their own, so every job's last run and outcome is in
one place: the ``job_runs`` table, which ``storelink-agent status`` reads. A job is a
coroutine function returning an optional one-line detail ("pruned 1,204 reads"); an
exception marks the run failed, is logged, and the job runs again at its next time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.db import Database, DatabaseError, Durability

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[str | None]]

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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class JobScheduler:
    """Runs registered jobs on the event loop; records each run in ``job_runs``."""

    def __init__(self, db: Database, timezone: str = "UTC") -> None:
        self._db = db
        self._timezone = timezone
        self._scheduler = AsyncIOScheduler(timezone=timezone)
        self._names: set[str] = set()
        self._failing: set[str] = set()

    @property
    def names(self) -> frozenset[str]:
        """The registered jobs' names."""
        return frozenset(self._names)

    def every(self, name: str, seconds: float, job: Job, *, run_now: bool = False) -> None:
        """Run ``job`` every ``seconds`` (first run after one period unless ``run_now``)."""
        first = datetime.now(UTC) if run_now else None
        self._add(name, job, IntervalTrigger(seconds=seconds), first)

    def daily(self, name: str, at: str, job: Job) -> None:
        """Run ``job`` every day at ``HH:MM`` in the store's time zone."""
        hour, minute = (int(part) for part in at.split(":"))
        self._add(name, job, CronTrigger(hour=hour, minute=minute, timezone=self._timezone), None)

    def _add(self, name: str, job: Job, trigger: Any, first: datetime | None) -> None:
        if name in self._names:
            raise ValueError(f"job {name!r} is registered twice")
        self._names.add(name)

        async def run() -> None:
            await self.run_once(name, job)

        self._scheduler.add_job(
            run,
            trigger,
            id=name,
            name=name,
            next_run_time=first,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )

    async def run_once(self, name: str, job: Job) -> bool:
        """Run one job now, recording its outcome; True when it succeeded."""
        await self._record(_START, (name, _now()))
        began = time.monotonic()
        try:
            detail = await job() or ""
        except Exception as err:
            if name not in self._failing:
                log.warning("job %s failed: %s", name, err, exc_info=True)
            self._failing.add(name)
            await self._record(_FINISH, (_now(), "failed", str(err)[:500], 1, name))
            return False
        if name in self._failing:
            log.info("job %s succeeded again", name)
            self._failing.discard(name)
        took = time.monotonic() - began
        log.debug("job %s done in %.3f s: %s", name, took, detail)
        await self._record(_FINISH, (_now(), "ok", detail[:500], 0, name))
        return True

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
