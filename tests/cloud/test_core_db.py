"""Database: migrations produce exactly cloud/schema.py, the epoch, SQLite settings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, select

from cloud import db
from cloud.config import CloudConfig
from cloud.schema import meta, metadata
from tests.cloud.conftest import sqlite_only


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection)
    return list(compare_metadata(context, metadata))


async def test_migrations_produce_the_schema(cloud_config: CloudConfig) -> None:
    async with db.open_database(cloud_config) as engine, engine.connect() as conn:
        assert await conn.run_sync(_differences) == []
        tables = set(await conn.run_sync(lambda c: c.dialect.get_table_names(c)))
    assert tables == set(metadata.tables) | {"alembic_version"}


async def test_epoch_is_set_once_and_rotates_on_request(cloud_config: CloudConfig) -> None:
    async with db.open_database(cloud_config) as engine:
        async with engine.connect() as conn:
            first = await db.get_epoch(conn)
        rotated = await db.rotate_epoch(engine)
    async with db.open_database(cloud_config) as engine, engine.connect() as conn:
        assert await db.get_epoch(conn) == rotated != first
        assert len(rotated) == 32
        assert await conn.scalar(select(meta.c.value).where(meta.c.key == "epoch")) == rotated


async def test_sqlite_runs_in_wal_with_full_sync_and_foreign_keys(
    cloud_config: CloudConfig,
) -> None:
    sqlite_only(cloud_config)
    async with db.open_database(cloud_config) as engine, engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == db.BUSY_TIMEOUT_MS
    assert await asyncio.to_thread((cloud_config.server.data_dir / db.SQLITE_FILE).exists)


def test_times_are_utc() -> None:
    shanghai = datetime(2026, 11, 28, 18, 0, tzinfo=timezone(timedelta(hours=8)))
    assert db.rfc3339(shanghai) == "2026-11-28T10:00:00.000Z"
    assert db.utc(shanghai) == shanghai
    assert db.utc(datetime(2026, 11, 28, 10, 0)).tzinfo is UTC


async def test_wal_checkpointer_runs_beside_writers(
    cloud_config: CloudConfig, caplog: pytest.LogCaptureFixture
) -> None:
    from cloud import auth

    sqlite_only(cloud_config)
    async with db.open_database(cloud_config) as engine:
        async with db.WalCheckpointer(engine, every_s=0.01):
            for n in range(5):
                await auth.add_store(engine, f"S{n}", "Store", "east", timedelta(hours=1))
                await asyncio.sleep(0.02)
        async with engine.connect() as conn:
            result = await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
            row: Any = result.one()
    busy, frames, done = row[0], row[1], row[2]
    assert busy == 0
    assert frames == done
    assert "checkpoint failed" not in caplog.text
