"""Composition root of the sync daemon (``storelink-sync run``).

Start order, closed in reverse on one ``AsyncExitStack``:

1. the single-instance lock ``data_dir/sync.lock`` (two daemons would send everything twice);
2. the agent's database (the same file the agent writes; migrations as needed);
3. the enrollment, the store key (signs requests) and the replica key (seals members);
4. the cloud client (one HTTP session), which also times uploads for the metrics;
5. ``GET /metrics`` on ``[sync] metrics_listen`` (agent.sync.metrics);
6. the loops: download, upload, heartbeat, each in its own task; then readiness to systemd.

The systemd watchdog pinger (agent.sdnotify) runs on this event loop from the start.

Stopping cancels the loops: whatever was in flight is simply sent or pulled again next time,
since every mark and cursor lives in the database with the data it covers.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType

from agent.config import AgentConfig
from agent.db import DB_FILE, Database
from agent.replica import load_or_create_replica_key
from agent.sdnotify import Notifier, pinging
from agent.storekey import load_or_create_store_key
from agent.sync.backoff import Backoff
from agent.sync.client import AlreadyRunning, CannotStart, CloudClient, NotEnrolled
from agent.sync.download import Downloader
from agent.sync.epoch import EpochKeeper
from agent.sync.heartbeat import Heartbeat
from agent.sync.loop import SyncLoop
from agent.sync.metrics import MeteredCloudClient, MetricsServer, SyncMetrics
from agent.sync.settings import SyncSettings
from agent.sync.state import read_enrollment
from agent.sync.upload import Uploader

log = logging.getLogger(__name__)

LOCK_FILE = "sync.lock"


class InstanceLock:
    """An exclusive ``flock`` on a file while entered; AlreadyRunning if another holds it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def _acquire(self) -> int:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(fd)
            raise AlreadyRunning(
                f"another storelink-sync is already running for {self._path.parent}"
            ) from err
        return fd

    async def __aenter__(self) -> InstanceLock:
        self._fd = await asyncio.to_thread(self._acquire)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            # Closing the descriptor releases the lock.
            await asyncio.to_thread(os.close, fd)


async def _check_store(db: Database, store_id: str) -> None:
    rows = await db.reader.execute_fetchall("SELECT value FROM store_meta WHERE key = 'store_id'")
    owner = next((str(row[0]) for row in rows), None)
    if owner is not None and owner != store_id:
        raise CannotStart(
            f"data_dir belongs to store {owner!r}, but the config says store {store_id!r}"
        )


async def run_sync(
    config: AgentConfig,
    stop: asyncio.Event,
    settings: SyncSettings | None = None,
    started: asyncio.Event | None = None,
    *,
    notifier: Notifier | None = None,
) -> None:
    """Sync the store with its cloud until ``stop`` is set; ``started`` once the loops run.

    ``notifier`` defaults to the systemd socket named in the environment, if any.
    """
    settings = settings or SyncSettings()
    notifier = notifier if notifier is not None else Notifier.from_environ()
    store_id = config.store.id
    data_dir = config.store.data_dir
    if not await asyncio.to_thread(data_dir.is_dir):
        raise NotEnrolled(f"data_dir {data_dir} does not exist: enroll the store first")
    async with AsyncExitStack() as stack:
        stack.callback(notifier.close)
        await stack.enter_async_context(pinging(notifier))
        await stack.enter_async_context(InstanceLock(data_dir / LOCK_FILE))
        db = await stack.enter_async_context(Database(data_dir / DB_FILE))
        await _check_store(db, store_id)
        enrollment = await read_enrollment(db.reader)
        if enrollment.cloud_url != config.cloud.url:
            log.warning(
                "syncing with %s, where the store enrolled; the config's [cloud] url is %s",
                enrollment.cloud_url,
                config.cloud.url,
            )
        key = await asyncio.to_thread(load_or_create_store_key, data_dir)
        seal = await asyncio.to_thread(load_or_create_replica_key, data_dir)
        metrics = SyncMetrics(db)
        client: CloudClient = await stack.enter_async_context(
            MeteredCloudClient(
                enrollment.cloud_url,
                store_id,
                key,
                timeout_s=settings.request_timeout_s,
                connect_timeout_s=settings.connect_timeout_s,
                metrics=metrics,
            )
        )
        await stack.enter_async_context(MetricsServer(metrics, config.sync.metrics_listen))
        epochs = EpochKeeper(db, client)
        jobs = (
            (
                "download",
                Downloader(db, client, epochs, seal, settings).pull,
                settings.download_poll_s,
            ),
            (
                "upload",
                Uploader(db, client, epochs, store_id, settings).drain,
                settings.upload_poll_s,
            ),
            (
                "heartbeat",
                Heartbeat(db, client, epochs, settings.version).beat,
                settings.heartbeat_s,
            ),
        )
        for name, job, interval in jobs:
            backoff = Backoff(settings.backoff_base_s, settings.backoff_cap_s)
            loop = SyncLoop(name, job, interval, db=db, epochs=epochs, backoff=backoff)
            await stack.enter_async_context(loop)
        log.info("syncing store %s with %s", store_id, enrollment.cloud_url)
        if started is not None:
            started.set()
        notifier.ready(f"syncing store {store_id} with {enrollment.cloud_url}")
        await stop.wait()
        notifier.stopping()
        log.info("sync stopping")
