"""A sync job run forever in its own task: again after its interval, after a backoff on failure.

A failure of any kind ends one round only: the loop backs off (honouring Retry-After), records
the error for status and heartbeat, and tries again, so the backlog drains once the fault
ends without a restart. An epoch change is not a failure: the loop resyncs and runs again at
once. The first failure of a kind is logged at WARNING, repeats at DEBUG, the recovery at INFO.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType

from agent.db import Database, DatabaseError, Durability
from agent.sync.backoff import Backoff
from agent.sync.client import BadAnswer, CloudUnavailable, EpochChanged, SyncError
from agent.sync.epoch import EpochKeeper
from agent.sync.state import ERROR_PREFIX, delete_state, error_value, state_value, write_state

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[object]]


class SyncLoop:
    """Runs ``job`` every ``interval_s`` while entered (``async with``)."""

    def __init__(
        self,
        name: str,
        job: Job,
        interval_s: float,
        *,
        db: Database,
        epochs: EpochKeeper,
        backoff: Backoff,
    ) -> None:
        self.name = name
        self._job = job
        self._interval_s = interval_s
        self._db = db
        self._epochs = epochs
        self._backoff = backoff
        self._failing: str | None = None
        # An error may be left in the database by an earlier run: the first success clears it.
        self._error_stored = True
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SyncLoop:
        self._task = asyncio.create_task(self._run(), name=f"sync-{self.name}")
        return self

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

    async def _run(self) -> None:
        while True:
            delay = await self.run_once()
            await asyncio.sleep(delay)

    async def run_once(self) -> float:
        """One round; return how long to wait before the next."""
        error = await self._attempt(self._job)
        if isinstance(error, EpochChanged):
            seen = error.epoch
            error = await self._attempt(lambda: self._resync(seen))
            if error is None:
                return 0.0
        if error is None:
            await self._succeeded()
            return self._interval_s
        await self._failed(error)
        retry_after = error.retry_after_s if isinstance(error, CloudUnavailable) else None
        return self._backoff.next_delay(retry_after)

    async def _resync(self, seen: str) -> None:
        if await self._epochs.resync():
            return
        if await state_value(self._db.reader, "epoch") == seen:
            return  # another loop has just resynced to the epoch this one saw
        # An answer from before a resync, or answers that disagree: backing off keeps a
        # confused cloud from being asked again in a tight loop.
        raise BadAnswer(f"the cloud answered from epoch {seen}, which its sync-state denies")

    async def _attempt(self, job: Job) -> Exception | None:
        try:
            await job()
        except (SyncError, DatabaseError, sqlite3.Error) as err:
            return err
        except Exception as err:
            # A bug must not end the loop: the backlog would stop draining until a restart.
            log.exception("sync %s: unexpected error", self.name)
            return err
        return None

    async def _succeeded(self) -> None:
        self._backoff.reset()
        if self._failing is not None:
            log.info("sync %s: working again", self.name)
            self._failing = None
        if self._error_stored:
            with contextlib.suppress(DatabaseError):
                async with self._db.write(Durability.NORMAL) as conn:
                    await delete_state(conn, [ERROR_PREFIX + self.name])
                self._error_stored = False

    async def _failed(self, error: Exception) -> None:
        if isinstance(error, CloudUnavailable):
            self._epochs.unconfirm()
        message = str(error) or type(error).__name__
        if message != self._failing:
            log.warning("sync %s failed: %s", self.name, message)
        else:
            log.debug("sync %s failed again: %s", self.name, message)
        self._failing = message
        try:
            async with self._db.write(Durability.NORMAL) as conn:
                value = error_value(message, datetime.now(UTC))
                await write_state(conn, {ERROR_PREFIX + self.name: value})
            self._error_stored = True
        except DatabaseError as err:
            log.debug("sync %s: cannot record the error: %s", self.name, err)
