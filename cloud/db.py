"""The cloud database: engine from config, migrations to head, the epoch, small portable helpers.

Embedded SQLite (``{data_dir}/cloud.db``, WAL, ``synchronous=FULL``) unless ``[database] url``
names PostgreSQL. Queries are SQLAlchemy Core against :mod:`cloud.schema`, so they run on both;
the few dialect differences (upserts, SQLite's transaction start) live here.

Times: SQLite keeps ``DateTime`` values without an offset, so every time is written in UTC
(:func:`utc`) and read back through :func:`utc` too.

Exceptions::

    Exception
     └── DatabaseError        the database cannot be opened or migrated
          └── DatabaseBusy    other writers kept it busy past the busy timeout (retry later)
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload

import msgspec
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationStep
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Table, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cloud.config import CloudConfig
from cloud.schema import meta, metadata

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SQLITE_FILE = "cloud.db"
# How long a SQLite writer waits for another one before giving up with "database is locked".
BUSY_TIMEOUT_MS = 5000
_WRITE_OPTION = "storelink_write"
_WRITE_LOCK_OPTION = "storelink_write_lock"
# The WAL is normally checkpointed in the background (WalCheckpointer), off the commit path;
# this much WAL (pages of 4 KiB) makes a committing writer checkpoint it anyway.
WAL_AUTOCHECKPOINT_PAGES = 16384
WAL_CHECKPOINT_EVERY_S = 1.0
WAL_KEEP_BYTES = 64 * 1024 * 1024
CACHE_KIB = 64 * 1024  # per connection
# Any constant: only stops two processes migrating the same PostgreSQL database at once.
_PG_MIGRATION_LOCK = 0x5354_4C4B


class DatabaseError(Exception):
    """The database cannot be opened or migrated."""


class DatabaseBusy(DatabaseError):
    """Other writers kept the database busy for longer than the busy timeout."""


def database_url(config: CloudConfig) -> str:
    """The SQLAlchemy URL: the configured PostgreSQL one, else the embedded SQLite file."""
    if config.database is not None:
        return config.database.url
    return f"sqlite+aiosqlite:///{config.server.data_dir / SQLITE_FILE}"


def _json_dumps(value: Any) -> str:
    # msgspec embeds msgspec.Raw values verbatim: ingest stores payloads without re-encoding.
    return msgspec.json.encode(value).decode("utf-8")


def create_engine(config: CloudConfig) -> AsyncEngine:
    """An async engine for the configured database (no I/O until first use)."""
    url = database_url(config)
    engine = create_async_engine(
        url, json_serializer=_json_dumps, json_deserializer=msgspec.json.decode
    )
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
        # SQLite has one writer at a time. Queueing this process's writers on a lock hands the
        # database over the moment a transaction ends; waiting in SQLite's busy handler instead
        # means sleeping in growing steps (up to 100 ms) and retrying.
        engine = engine.execution_options(**{_WRITE_LOCK_OPTION: asyncio.Lock()})
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (below); the driver's implicit BEGIN cannot be IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "foreign_keys=ON",
            f"busy_timeout={BUSY_TIMEOUT_MS}",
            f"wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}",
            # Random-key indexes (sale ids are UUIDv4) outgrow the 2 MiB default quickly.
            f"cache_size=-{CACHE_KIB}",
            # The WAL file is reused, not shrunk, after a checkpoint: cap what it keeps.
            f"journal_size_limit={WAL_KEEP_BYTES}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A deferred transaction that reads first and writes later fails at once with
        # "database is locked" when another connection wrote meanwhile; IMMEDIATE takes the
        # write lock up front and waits busy_timeout for it instead.
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@asynccontextmanager
async def begin_write(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction; on SQLite it holds the write lock from its first statement.

    Do not nest: on SQLite a second write transaction in the same task waits for the first.
    """
    lock: asyncio.Lock | None = engine.get_execution_options().get(_WRITE_LOCK_OPTION)
    if lock is None:
        async with engine.execution_options(**{_WRITE_OPTION: True}).begin() as conn:
            yield conn
        return
    try:
        await asyncio.wait_for(lock.acquire(), BUSY_TIMEOUT_MS / 1000)
    except TimeoutError as err:
        raise DatabaseBusy(f"no write turn within {BUSY_TIMEOUT_MS} ms") from err
    try:
        async with engine.execution_options(**{_WRITE_OPTION: True}).begin() as conn:
            yield conn
    finally:
        lock.release()


def insert_for_dialect(dialect_name: str, table: Table) -> Any:
    """The INSERT construct of that dialect, which has ``on_conflict_do_nothing``/``_do_update``."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def insert_for(conn: AsyncConnection | Connection, table: Table) -> Any:
    """The connection's dialect's INSERT construct (see :func:`insert_for_dialect`)."""
    return insert_for_dialect(conn.dialect.name, table)


def utc(moment: datetime) -> datetime:
    """An aware UTC datetime; naive values (SQLite reads) are taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@overload
def rfc3339(moment: datetime) -> str: ...
@overload
def rfc3339(moment: None) -> None: ...
def rfc3339(moment: datetime | None) -> str | None:
    """RFC 3339 UTC text with milliseconds, e.g. ``2026-11-28T10:15:00.123Z``; None stays None."""
    if moment is None:
        return None
    return utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> datetime:
    """The current time, aware, UTC."""
    return datetime.now(UTC)


def is_overloaded(err: BaseException) -> bool:
    """Whether a database error means "busy, try again later" rather than a bug."""
    if isinstance(err, PoolTimeoutError | DatabaseBusy):
        return True
    if isinstance(err, OperationalError):
        message = str(err.orig).lower()
        return "locked" in message or "busy" in message or "too many" in message
    return False


async def get_epoch(conn: AsyncConnection) -> str:
    """This database's epoch: random, set when the database was created."""
    value = await conn.scalar(select(meta.c.value).where(meta.c.key == "epoch"))
    if value is None:
        raise DatabaseError("database has no epoch; it was not migrated")
    return str(value)


async def rotate_epoch(engine: AsyncEngine) -> str:
    """Give the database a new epoch (after restoring a backup): stores resync and re-upload."""
    epoch = secrets.token_hex(16)
    async with begin_write(engine) as conn:
        await conn.execute(meta.update().where(meta.c.key == "epoch").values(value=epoch))
    return epoch


def _load_scripts() -> tuple[Config, ScriptDirectory]:
    # Reading the version files is blocking I/O: done in a thread, once, so that the upgrade
    # (which runs inside the event loop through run_sync) touches only the database.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(config)
    script.get_heads()
    return config, script


def _upgrade(connection: Connection, config: Config, script: ScriptDirectory) -> None:
    """What ``alembic upgrade head`` does, minus reading env.py and the scripts from disk."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})

    def steps(heads: Any, _context: MigrationContext) -> list[MigrationStep]:
        revisions = script.iterate_revisions("head", heads, implicit_base=True)
        return [
            MigrationStep.upgrade_from_script(script.revision_map, revision)
            for revision in reversed(list(revisions))
        ]

    with EnvironmentContext(config, script, fn=steps, destination_rev="head") as env:
        env.configure(connection=connection, target_metadata=metadata)
        with env.begin_transaction():
            env.run_migrations()


async def migrate(engine: AsyncEngine) -> str:
    """Upgrade the schema to head and make sure the epoch exists; return the epoch."""
    config, script = await asyncio.to_thread(_load_scripts)
    try:
        async with begin_write(engine) as conn:
            await conn.run_sync(_upgrade, config, script)
            await conn.execute(
                insert_for(conn, meta)
                .values(key="epoch", value=secrets.token_hex(16))
                .on_conflict_do_nothing()
            )
            return await get_epoch(conn)
    except SQLAlchemyError as err:
        raise DatabaseError(f"cannot migrate the database: {err}") from err


class WalCheckpointer:
    """Checkpoints SQLite's WAL every second on a connection of its own while entered.

    A commit that crosses ``wal_autocheckpoint`` copies the WAL into the database file before
    it returns; doing that here instead keeps the copying (and its fsync) off ingest's commit
    path and on another thread. On PostgreSQL it does nothing.
    """

    def __init__(self, engine: AsyncEngine, every_s: float = WAL_CHECKPOINT_EVERY_S) -> None:
        self._engine = engine
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def _checkpoint(self) -> None:
        async with self._engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            # The driver connection runs in autocommit (see _configure_sqlite): a checkpoint
            # must not run inside a transaction.
            cursor = await driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
            await cursor.close()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                await self._checkpoint()
            except SQLAlchemyError:
                # Writers still checkpoint past WAL_AUTOCHECKPOINT_PAGES; try again later.
                log.warning("WAL checkpoint failed", exc_info=True)

    async def __aenter__(self) -> WalCheckpointer:
        if self._engine.dialect.name == "sqlite":
            self._task = asyncio.create_task(self._run(), name="wal-checkpointer")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task


@asynccontextmanager
async def open_database(config: CloudConfig) -> AsyncIterator[AsyncEngine]:
    """Create the data directory if needed, connect, migrate; dispose the engine on exit."""
    if config.database is None:
        try:
            await asyncio.to_thread(config.server.data_dir.mkdir, parents=True, exist_ok=True)
        except OSError as err:
            raise DatabaseError(f"cannot create data_dir {config.server.data_dir}: {err}") from err
    # SQLAlchemy resolves the SQLite path with os.path.abspath: file system work, off the loop.
    engine = await asyncio.to_thread(create_engine, config)
    try:
        await migrate(engine)
        yield engine
    finally:
        await engine.dispose()
