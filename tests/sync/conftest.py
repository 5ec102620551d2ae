"""Fixtures for the store side of sync: the real cloud app on 127.0.0.1 with a SQLite file, an
enrolled store with a real agent database, and the real daemon loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import tomllib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agent.config import AgentConfig, parse_config
from agent.db import DB_FILE, Database, Durability
from agent.enroll import enroll
from agent.outbox import NewEvent, Outbox, epoch_ms, utc_iso
from agent.replica import MemberSeal, load_or_create_replica_key
from agent.sync.app import run_sync
from agent.sync.settings import SyncSettings
from cloud import appkeys, auth
from cloud.app import cloud_app
from cloud.config import parse_config as parse_cloud_config
from tests.helpers import agent_toml, free_port

STORE = "S001"
# Fast loops for tests; everything else as a store runs it.
FAST = SyncSettings(
    upload_poll_s=0.05,
    download_poll_s=0.1,
    heartbeat_s=0.2,
    backoff_base_s=0.05,
    backoff_cap_s=0.3,
    request_timeout_s=5.0,
    connect_timeout_s=2.0,
)


@dataclass
class Cloud:
    """A running cloud: its app, URL, and an HQ user's session."""

    app: web.Application
    url: str
    session: aiohttp.ClientSession
    hq_token: str

    @property
    def engine(self) -> AsyncEngine:
        return self.app[appkeys.ENGINE]

    @property
    def epoch(self) -> str:
        return self.app[appkeys.EPOCH]

    async def token(self, store_id: str = STORE, ttl: timedelta = timedelta(hours=1)) -> str:
        """A one-time enrollment token for the store (creating the store)."""
        return await auth.add_store(self.engine, store_id, f"Store {store_id}", "east", ttl)

    async def hq(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """An HQ request to the cloud's user API."""
        headers = {"Authorization": f"Bearer {self.hq_token}"}
        async with self.session.request(
            method, self.url + path, json=body, headers=headers
        ) as resp:
            return resp.status, await resp.json(content_type=None)

    async def hq_ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = await self.hq(method, path, body)
        assert status in (200, 201), (status, answer)
        return answer

    async def scalar(self, sql: str, **params: Any) -> Any:
        """One value from the cloud database."""
        async with self.engine.connect() as conn:
            return await conn.scalar(text(sql), params)


@contextlib.asynccontextmanager
async def running_cloud(data_dir: Path) -> AsyncIterator[Cloud]:
    """A cloud on 127.0.0.1 (port chosen by the OS) with its database in data_dir."""
    config = parse_cloud_config(
        f'[server]\nlisten = "127.0.0.1:8080"\npublic_url = "http://127.0.0.1:8080"\n'
        f'data_dir = "{data_dir}"\n'
    )
    async with cloud_app(config) as app:
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                token = await auth.add_user(app[appkeys.ENGINE], "hq", "hq", None)
                yield Cloud(app, str(server.make_url("")).rstrip("/"), session, token)
        finally:
            await server.close()


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[Cloud]:
    async with running_cloud(tmp_path / "cloud") as running:
        yield running


async def store_config(
    tmp_path: Path, cloud_url: str, printer_uri: str | None = None
) -> AgentConfig:
    """The agent config of store S001 (validated off the loop: it reads zone files)."""
    text = agent_toml(tmp_path / "store", free_port(), printer_uri, cloud_url=cloud_url)
    return await asyncio.to_thread(parse_config, tomllib.loads(text))


@dataclass
class Store:
    """An enrolled store: its config and its open agent database."""

    config: AgentConfig
    db: Database
    outbox: Outbox

    @property
    def db_path(self) -> Path:
        return self.config.store.data_dir / DB_FILE

    async def seal(self) -> MemberSeal:
        return await asyncio.to_thread(load_or_create_replica_key, self.config.store.data_dir)

    async def add_sales(self, count: int, first: int = 1) -> None:
        """Append valid sale events, as checkout would."""
        now = datetime.now(UTC)
        events = [
            NewEvent("sale", sale_payload(i), epoch_ms(now)) for i in range(first, first + count)
        ]
        await self.outbox.append_many(events, Durability.NORMAL)

    async def add_event(self, kind: str, payload: Mapping[str, Any], v: int = 1) -> None:
        await self.outbox.append_many([NewEvent(kind, payload, epoch_ms(datetime.now(UTC)), v)])

    async def rows(self, sql: str, *params: Any) -> list[Any]:
        return list(await self.db.reader.execute_fetchall(sql, params))

    async def value(self, sql: str, *params: Any) -> Any:
        rows = await self.rows(sql, *params)
        return rows[0][0] if rows else None

    async def unsent(self) -> int:
        return int(
            await self.value(
                "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND rejected_at IS NULL"
            )
        )


@contextlib.asynccontextmanager
async def enrolled_store(
    config: AgentConfig, cloud: Cloud, via: str | None = None
) -> AsyncIterator[Store]:
    """Enroll the store (through the URL ``via``, a proxy say) and open its database."""
    await enroll(config, via or cloud.url, await cloud.token())
    async with Database(config.store.data_dir / DB_FILE) as db:
        yield Store(config, db, Outbox(db))


@pytest.fixture
async def store(tmp_path: Path, cloud: Cloud) -> AsyncIterator[Store]:
    config = await store_config(tmp_path, cloud.url)
    async with enrolled_store(config, cloud) as enrolled:
        yield enrolled


def sale_payload(i: int, *, member: str | None = None) -> dict[str, Any]:
    """A valid sale.v1 payload with receipt number i."""
    return {
        "sale_id": str(uuid.uuid4()),
        "register_id": "R1",
        "staff_id": "A07",
        "member_id": member,
        "lines": [
            {
                "gtin": "06901234567892",
                "name": "Trail jacket",
                "qty": 1,
                "unit_price": 59900,
                "discount": 0,
            }
        ],
        "payments": [{"method": "card", "amount": 59900}],
        "total": 59900,
        "currency": "CNY",
        "occurred_at": utc_iso(datetime.now(UTC)),
        "receipt_no": f"{STORE}-{i:06d}",
        "receipt_seq": i,
        "receipt_url": "http://127.0.0.1:8080/r/x",
    }


@contextlib.asynccontextmanager
async def daemon(config: AgentConfig, settings: SyncSettings = FAST) -> AsyncIterator[None]:
    """The sync daemon running in this event loop until the block ends."""
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_sync(config, stop, settings, started), name="sync-under-test")
    waiter = asyncio.create_task(started.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()
        raise AssertionError("sync daemon stopped during start-up")
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def eventually(check: Any, within_s: float = 15.0) -> None:
    """Wait until the async check returns true."""
    deadline = asyncio.get_running_loop().time() + within_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)
