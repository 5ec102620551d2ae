"""The agent's SQLite file: one writer connection, WAL, versioned migrations.

The agent and the sync daemon open the same file from separate processes. Every write goes
through :meth:`Database.write`, which holds the process's single writer lock and runs an
``IMMEDIATE`` transaction, so a transaction either commits whole or leaves nothing behind.

Durability is chosen per transaction: sales and anything the POS is told about commit with
``synchronous=FULL`` (fsync before the answer); device telemetry and print-job bookkeeping use
``NORMAL``, which in WAL mode survives a killed process and loses at most the last moments
of telemetry on power loss.

Exceptions::

    DatabaseError
     ├── StorageFull       the disk or the file's size limit is reached; nothing was written
     └── SchemaTooNew      the file was written by a newer storelink
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from enum import Enum
from pathlib import Path
from types import TracebackType

import aiosqlite

from agent.migrations import MIGRATIONS

log = logging.getLogger(__name__)

DB_FILE = "agent.db"
WAL_SWITCH_ATTEMPTS = 50


class DatabaseError(Exception):
    """A database operation failed."""


class StorageFull(DatabaseError):
    """The data directory has no room left; the transaction was rolled back."""


class SchemaTooNew(DatabaseError):
    """The database was migrated by a newer version of storelink."""


class Durability(Enum):
    FULL = "FULL"
    NORMAL = "NORMAL"


def _is_full(err: sqlite3.Error) -> bool:
    code = getattr(err, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(err)


class Database:
    """An open agent database; use as ``async with Database(path) as db``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._durability = Durability.FULL

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        """The writer connection; use it only inside :meth:`write`."""
        if self._conn is None:
            raise DatabaseError("database is not open")
        return self._conn

    @property
    def reader(self) -> aiosqlite.Connection:
        """A connection for reads outside write transactions.

        It sees only committed data: the writer connection would also show rows of a
        transaction still in progress, which might yet roll back.
        """
        if self._reader is None:
            raise DatabaseError("database is not open")
        return self._reader

    async def open(self) -> None:
        """Open the file, set WAL and FULL sync, and apply pending migrations."""
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, nothing implicit.
        self._conn = await aiosqlite.connect(self.path, isolation_level=None)
        # The sync daemon writes to the same file; wait for its short transactions.
        await self._conn.execute("PRAGMA busy_timeout=10000")
        await self._use_wal(self._conn)
        await self._conn.execute("PRAGMA synchronous=FULL")
        await self._conn.execute("PRAGMA foreign_keys=ON")
        await self._migrate()
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader.execute("PRAGMA busy_timeout=10000")
        await self._reader.execute("PRAGMA query_only=ON")

    @staticmethod
    async def _use_wal(conn: aiosqlite.Connection) -> None:
        # Turning a new file to WAL needs it alone, and SQLite answers "locked" at once rather
        # than wait (waiting could deadlock) when the agent and the daemon open it together.
        for attempt in range(WAL_SWITCH_ATTEMPTS):
            try:
                await conn.execute("PRAGMA journal_mode=WAL")
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == WAL_SWITCH_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.02 * (attempt + 1))
            else:
                return

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.close()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _migrate(self) -> None:
        current = await self._schema_version(self.conn)
        while current < len(MIGRATIONS):
            async with self.write() as conn:
                # The agent and the sync daemon may open a new file at the same moment: only
                # the version read under the write lock says whether this one is still due.
                current = await self._schema_version(conn)
                if current < len(MIGRATIONS):
                    current += 1
                    log.info("migrating %s to schema version %d", self.path, current)
                    for statement in _statements(MIGRATIONS[current - 1]):
                        await conn.execute(statement)
                    await conn.execute(f"PRAGMA user_version={current}")

    async def _schema_version(self, conn: aiosqlite.Connection) -> int:
        async with conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        current = int(row[0]) if row else 0
        if current > len(MIGRATIONS):
            raise SchemaTooNew(
                f"{self.path} has schema version {current}; this storelink knows up to "
                f"{len(MIGRATIONS)}: upgrade storelink instead of downgrading it"
            )
        return current

    @contextlib.asynccontextmanager
    async def write(
        self, durability: Durability = Durability.FULL
    ) -> AsyncIterator[aiosqlite.Connection]:
        """Run one write transaction; commit on success, roll back on any error."""
        async with self._write_lock:
            conn = self.conn
            if durability is not self._durability:
                await conn.execute(f"PRAGMA synchronous={durability.value}")
                self._durability = durability
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise _translate(err) from err
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException as err:
                await _rollback(conn)
                if isinstance(err, sqlite3.Error) and not isinstance(err, sqlite3.IntegrityError):
                    raise _translate(err) from err
                raise


async def _rollback(conn: aiosqlite.Connection) -> None:
    # A failed COMMIT (disk full) may already have ended the transaction.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            await asyncio.shield(conn.execute("ROLLBACK"))


def _translate(err: sqlite3.Error) -> DatabaseError:
    if _is_full(err):
        return StorageFull("no space left for the agent's database; nothing was written")
    return DatabaseError(str(err))


def _statements(script: str) -> list[str]:
    return [part.strip() for part in script.split(";\n") if part.strip()]
