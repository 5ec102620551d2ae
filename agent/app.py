"""The agent process's composition root.

Start order (closed in reverse): data directory, store key and replica key → database
(migrations) → outbox writer → job scheduler → devices (RFID, Wi-Fi, camera) → mDNS look-ups
(only for dnssd:// printers) → one print worker per printer → the agent's own jobs → local API
→ mDNS advertisement. The API opens last,
so the POS is never answered before everything behind it runs, and closes first on shutdown
(after its advertisement is withdrawn).
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
from agent.discovery import Discovery, DiscoveryError, advertising_interfaces
from agent.jobs import JobScheduler, register_agent_jobs
from agent.members import MemberDirectory
from agent.outbox import Outbox
from agent.printing import PrinterWorker, Resolver
from agent.replica import load_or_create_replica_key
from agent.rfid.service import RfidService
from agent.sdnotify import Notifier, pinging
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
    notifier = Notifier.from_environ()
    try:
        await run_agent(config, stop, notifier=notifier)
    finally:
        notifier.close()


async def run_agent(
    config: AgentConfig,
    stop: asyncio.Event,
    started: asyncio.Event | None = None,
    *,
    notifier: Notifier | None = None,
) -> None:
    """Run the agent until ``stop`` is set; ``started`` is set once the API listens.

    ``notifier`` tells systemd when the API listens and when the agent stops, and pings its
    watchdog from this event loop throughout (see agent.sdnotify).
    """
    notifier = notifier or Notifier(None)
    data_dir = config.store.data_dir
    await asyncio.to_thread(prepare_data_dir, data_dir)
    key = await asyncio.to_thread(load_or_create_store_key, data_dir)
    seal = await asyncio.to_thread(load_or_create_replica_key, data_dir)
    async with contextlib.AsyncExitStack() as stack:
        # Pinging from the start: opening the database may migrate it for a while.
        await stack.enter_async_context(pinging(notifier))
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
        resolver = await _open_resolver(stack, config)
        workers: dict[str, PrinterWorker] = {}
        for printer in config.printers:
            workers[printer.name] = await stack.enter_async_context(
                PrinterWorker(config, printer, db, resolver)
            )
        register_agent_jobs(jobs, db, workers, config.outbox.retention_days)
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
        await _advertise(stack, config)
        if started is not None:
            started.set()
        notifier.ready(f"store {config.store.id}: POS API on {config.api.listen}")
        await stop.wait()
        notifier.stopping()
        log.info("agent stopping")


async def _open_resolver(stack: contextlib.AsyncExitStack, config: AgentConfig) -> Resolver | None:
    """mDNS look-ups for printers configured by advertised name (dnssd://), if any."""
    if not any(p.parsed_uri.scheme == "dnssd" for p in config.printers):
        return None
    try:
        mdns = await stack.enter_async_context(Discovery(config.discovery.interfaces))
    except DiscoveryError as err:
        log.warning("printers named by dnssd:// cannot be found: %s", err)
        return None
    timeout_s = config.discovery.resolve_timeout_s

    async def resolve(name: str) -> tuple[str, int]:
        return await mdns.resolve(name, timeout_s)

    return resolve


async def _advertise(stack: contextlib.AsyncExitStack, config: AgentConfig) -> None:
    """Advertise the POS API as _storelink._tcp; withdrawn before the API closes."""
    if not config.discovery.advertise:
        return
    try:
        mdns = await stack.enter_async_context(Discovery(advertising_interfaces(config)))
    except DiscoveryError as err:
        log.warning("cannot advertise the agent over mDNS: %s", err)
        return
    mdns.advertise_agent(config)
