"""Fixtures and seeders for the cloud domain tests: a migrated SQLite file, field keys, rows.

Used by the tests/cloud/test_domain_*.py modules; core's conftest.py is separate.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloud.changes import ChangePage, link_member_to_store, read_changes
from cloud.config import parse_config
from cloud.db import open_database
from cloud.fieldcrypt import FieldCrypt, load_field_crypt
from cloud.schema import sales, stores

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def cloud_config_text(data_dir: Path) -> str:
    """A minimal cloud.toml on embedded SQLite in data_dir."""
    return (
        f'[server]\nlisten = "127.0.0.1:8080"\npublic_url = "http://127.0.0.1:8080"\n'
        f'data_dir = "{data_dir}"\n'
    )


@dataclass(frozen=True)
class Domain:
    """A migrated cloud database and the field keys."""

    engine: AsyncEngine
    crypt: FieldCrypt


@asynccontextmanager
async def open_domain(tmp_path: Path) -> AsyncIterator[Domain]:
    """The cloud database (real migrations) in a SQLite file under tmp_path, and field keys."""
    config = parse_config(cloud_config_text(tmp_path / "cloud"))
    crypt = await asyncio.to_thread(load_field_crypt, tmp_path / "keys")
    async with open_database(config) as engine:
        yield Domain(engine, crypt)


async def add_store(conn: AsyncConnection, store_id: str, region: str = "east") -> None:
    """An enrolled store row."""
    await conn.execute(
        insert(stores).values(
            id=store_id, name=f"Store {store_id}", region=region, status="active", created_at=NOW
        )
    )


async def add_sale(
    conn: AsyncConnection, store_id: str, member_id: str | None, total: int, at: datetime
) -> None:
    """A sale row as ingest writes it, and the member link ingest makes."""
    seq = (await conn.scalar(select(sales.c.receipt_seq).order_by(sales.c.receipt_seq.desc()))) or 0
    await conn.execute(
        insert(sales).values(
            store_id=store_id,
            sale_id=str(uuid.uuid4()),
            event_id=str(uuid.uuid4()),
            receipt_no=f"R{seq + 1}",
            receipt_seq=seq + 1,
            register_id="R1",
            member_id=member_id,
            total=total,
            currency="CNY",
            occurred_at=at,
            receipt_url="http://127.0.0.1:8080/r/x",
        )
    )
    if member_id is not None:
        await link_member_to_store(conn, member_id, store_id, at)


async def feed(
    dom: Domain, store_id: str, since: int = 0, limit: int = 1000, now: datetime = NOW
) -> ChangePage:
    """One page of the store's change feed."""
    async with dom.engine.connect() as conn:
        return await read_changes(conn, dom.crypt, store_id, since, limit, now)


async def replica(dom: Domain, store_id: str, now: datetime = NOW) -> dict[tuple[str, str], Any]:
    """What a store's replica holds after applying its whole feed from since=0, page by page."""
    held: dict[tuple[str, str], Any] = {}
    since = 0
    while True:
        page = await feed(dom, store_id, since, 7, now)
        for change in page.changes:
            if change.data is None:
                held.pop((change.entity, change.id), None)
            else:
                held[change.entity, change.id] = change.data
        since = page.cursor
        if not page.more:
            return held
