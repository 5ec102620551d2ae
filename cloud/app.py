"""Composition root of the cloud process: subsystems in start order, then the aiohttp app.

:func:`cloud_app` enters each subsystem on one ``AsyncExitStack`` and closes them in reverse:

1. the database (:func:`cloud.db.open_database`: engine, migrations to head, epoch);
2. the WAL checkpointer (:class:`cloud.db.WalCheckpointer`, SQLite only);
3. the field encryption key (:func:`cloud.fieldcrypt.load_field_crypt`, in a thread);
4. the nonce purger (:class:`NoncePurger`), forgetting signature nonces past the skew window;
5. the segment scheduler (:class:`cloud.segments.SegmentScheduler`).

Only then is the application built, with every app key set, so nothing changes it once it
serves. Middlewares, outermost first: metrics, JSON errors, store signatures.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from cloud import (
    appkeys,
    auth,
    catalogue,
    changes,
    db,
    ereceipt,
    export,
    ingest,
    members,
    segments,
    status,
)
from cloud.config import CloudConfig
from cloud.fieldcrypt import FIELD_CRYPT, FieldCrypt, load_field_crypt
from cloud.metrics import Metrics

log = logging.getLogger(__name__)

NONCE_PURGE_EVERY_S = 60.0
GC_THRESHOLD = 100_000
# Compressed request bodies may be a little larger than the 8 MiB JSON they carry.
CLIENT_MAX_SIZE = auth.MAX_BODY_BYTES + 1024 * 1024


class NoncePurger:
    """A task deleting expired signature nonces every minute while entered."""

    def __init__(self, engine: AsyncEngine, skew_s: int, every_s: float = NONCE_PURGE_EVERY_S):
        self._engine = engine
        self._skew_s = skew_s
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                purged = await auth.purge_nonces(self._engine, self._skew_s)
            except SQLAlchemyError:
                # Purging is housekeeping: the next round tries again.
                log.warning("purging signature nonces failed", exc_info=True)
            else:
                log.debug("purged %d signature nonces", purged)

    async def __aenter__(self) -> NoncePurger:
        self._task = asyncio.create_task(self._run(), name="nonce-purger")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer API errors as JSON; a database that is overloaded says 503 and when to retry."""
    try:
        return await handler(request)
    except web.HTTPException as err:
        if (
            err.content_type == "application/json"
            or not request.path.startswith("/v1/")
            or err.status not in auth.JSON_ERROR_STATUSES
        ):
            raise
        raise auth.json_error(
            err.status, err.reason.lower().replace(" ", "_"), err.text or ""
        ) from err
    except (SQLAlchemyError, db.DatabaseBusy) as err:
        if db.is_overloaded(err):
            raise auth.json_error(
                503, "busy", "the database is busy; retry later", {"Retry-After": "2"}
            ) from err
        log.exception("database error on %s %s", request.method, request.path)
        raise auth.json_error(500, "internal", "internal error; see the cloud's log") from err
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as err:
        log.exception("unhandled error on %s %s", request.method, request.path)
        raise auth.json_error(500, "internal", "internal error; see the cloud's log") from err


def build_app(
    config: CloudConfig, engine: AsyncEngine, epoch: str, crypt: FieldCrypt
) -> web.Application:
    """The aiohttp application over running subsystems."""
    metrics = Metrics()
    app = web.Application(
        middlewares=[
            metrics.middleware(),
            json_errors,
            # Ingest records the nonce in its batch's transaction (see cloud.ingest).
            auth.store_signature_middleware(nonce_in_handler=[ingest.EVENTS_ROUTE]),
        ],
        # Signatures cover the body as sent (gzip); read_body decompresses, with a limit.
        handler_args={"auto_decompress": False},
        client_max_size=CLIENT_MAX_SIZE,
    )
    app[appkeys.CONFIG] = config
    app[appkeys.ENGINE] = engine
    app[appkeys.EPOCH] = epoch
    app[appkeys.METRICS] = metrics
    app[FIELD_CRYPT] = crypt
    for module in (auth, ingest, status, ereceipt, export, members, catalogue, changes, segments):
        module.setup_routes(app)
    app.router.add_get("/metrics", metrics.handle)
    return app


@asynccontextmanager
async def cloud_app(config: CloudConfig) -> AsyncIterator[web.Application]:
    """Start every subsystem, yield the app over them, stop them in reverse order."""
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(db.open_database(config))
        await stack.enter_async_context(db.WalCheckpointer(engine))
        async with engine.connect() as conn:
            epoch = await db.get_epoch(conn)
        crypt = await asyncio.to_thread(load_field_crypt, config.server.data_dir)
        await stack.enter_async_context(NoncePurger(engine, config.security.clock_skew_s))
        await stack.enter_async_context(segments.SegmentScheduler(engine))
        yield build_app(config, engine, epoch, crypt)


async def serve(config: CloudConfig) -> None:
    """Run the API on the configured address until SIGINT or SIGTERM."""
    host, port = config.listen
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with cloud_app(config) as app:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        # Everything allocated so far lives as long as the process: keeping it out of the
        # collector's full passes makes those cheap. A batch allocates ~100,000 objects that
        # die with it; collecting every 700 allocations (the default) would cost more than
        # decoding them.
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, 50, 50)
        try:
            await web.TCPSite(runner, host, port).start()
            log.info(
                "storelink cloud listening on http://%s:%d (epoch %s)",
                host,
                port,
                app[appkeys.EPOCH],
            )
            await stop.wait()
            log.info("stopping")
        finally:
            await runner.cleanup()
