"""The agent process's composition root.

Start order (closed in reverse): data directory, store key and replica key → database
(migrations) → outbox writer → job scheduler → devices (RFID, Wi-Fi, camera) → one print
worker per printer → local API. The API opens last,
so the POS is never answered before everything behind it runs, and closes first on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from agent.api import make_app
from agent.camera.service import CameraService
from agent.checkout import Checkout
from agent.config import AgentConfig
from agent.configbase import split_host_port
from agent.db import DB_FILE, Database, DatabaseError, Durability
from agent.jobs import JobScheduler
from agent.members import MemberDirectory
from agent.outbox import Outbox
from agent.printing import PrinterWorker
from agent.replica import load_or_create_replica_key
from agent.rfid.service import RfidService
from agent.storekey import load_or_create_store_key
from agent.wifi.service import WifiService

log = logging.getLogger(__name__)


class StartupError(Exception):
    """The agent cannot start; the message says why and what to do."""


def prepare_data_dir(path: Path) -> None:
    """Create the data directory (mode 0700) or check that it is a writable directory."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise StartupError(f"cannot create data_dir {path}: {err}") from err
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(f"data_dir {path} is not a writable directory")


async def claim_store(db: Database, store_id: str) -> None:
    """Bind the database to this store id; refuse a data_dir that belongs to another store."""
    async with db.reader.execute("SELECT value FROM store_meta WHERE key = 'store_id'") as cur:
        row = await cur.fetchone()
    if row is not None and row[0] != store_id:
        raise StartupError(
            f"data_dir belongs to store {row[0]!r}, but the config says store {store_id!r}; "
            "point data_dir at this store's directory"
        )
    if row is None:
        async with db.write(Durability.FULL) as conn:
            await conn.execute(
                "INSERT INTO store_meta (key, value) VALUES ('store_id', ?)", (store_id,)
            )


async def serve_until_signalled(config: AgentConfig) -> None:
    """Run the agent until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await run_agent(config, stop)


async def run_agent(
    config: AgentConfig, stop: asyncio.Event, started: asyncio.Event | None = None
) -> None:
    """Run the agent until ``stop`` is set; ``started`` is set once the API listens."""
    data_dir = config.store.data_dir
    await asyncio.to_thread(prepare_data_dir, data_dir)
    key = await asyncio.to_thread(load_or_create_store_key, data_dir)
    seal = await asyncio.to_thread(load_or_create_replica_key, data_dir)
    async with contextlib.AsyncExitStack() as stack:
        try:
            db = await stack.enter_async_context(Database(data_dir / DB_FILE))
        except DatabaseError as err:
            raise StartupError(f"cannot open the database in {data_dir}: {err}") from err
        await claim_store(db, config.store.id)
        outbox = await stack.enter_async_context(Outbox(db))
        jobs = await stack.enter_async_context(JobScheduler(db, config.store.timezone))
        # Devices: each service does nothing when its config section is empty.
        for service in (
            RfidService(config, db, outbox, jobs),
            WifiService(config, db, outbox, jobs),
            CameraService(config, db, outbox, jobs),
        ):
            await stack.enter_async_context(service)
        workers: dict[str, PrinterWorker] = {}
        for printer in config.printers:
            workers[printer.name] = await stack.enter_async_context(
                PrinterWorker(config, printer, db)
            )
        checkout = Checkout(config, db, outbox, key, workers)
        members = MemberDirectory(db, outbox, seal)
        app = make_app(config, db, outbox, checkout, workers, members)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        host, port = split_host_port(config.api.listen)
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as err:
            raise StartupError(f"cannot listen on {config.api.listen}: {err}") from err
        log.info(
            "agent for store %s: POS API on http://%s, %d printer(s)",
            config.store.id,
            config.api.listen,
            len(workers),
        )
        if started is not None:
            started.set()
        await stop.wait()
        log.info("agent stopping")
