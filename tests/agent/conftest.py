"""Fixtures that run the real agent in-process against the printer emulator."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.app import run_agent
from agent.config import AgentConfig, parse_config
from agent.db import DB_FILE
from drivers.printer.emulator import PrinterEmulator
from tests.helpers import POS_KEY, agent_toml, free_port


@dataclass
class RunningAgent:
    """An agent running in this test's event loop, and a client for its API."""

    config: AgentConfig
    base: str
    session: aiohttp.ClientSession

    @property
    def db_path(self) -> Path:
        return self.config.store.data_dir / DB_FILE

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = POS_KEY,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        kwargs: dict[str, Any] = {"headers": headers}
        if raw is not None:
            kwargs["data"] = raw
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            text = await resp.text()
            try:
                return resp.status, await resp.json(content_type=None)
            except ValueError:
                return resp.status, text

    async def post_sale(self, sale: dict[str, Any], key: str | None = POS_KEY) -> tuple[int, Any]:
        return await self.request("POST", "/v1/sales", sale, key=key)

    async def row_counts(self) -> dict[str, int]:
        def count() -> dict[str, int]:
            conn = sqlite3.connect(self.db_path)
            try:
                return {
                    t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                    for t in ("sales", "outbox", "print_jobs")
                }
            finally:
                conn.close()

        return await asyncio.to_thread(count)


@pytest.fixture
async def printer() -> AsyncIterator[PrinterEmulator]:
    async with PrinterEmulator(host="127.0.0.1", port=0) as emulator:
        yield emulator


@contextlib.asynccontextmanager
async def start_agent(config: AgentConfig) -> AsyncIterator[RunningAgent]:
    """Run the agent until the block ends."""
    stop, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_agent(config, stop, started), name="agent-under-test")
    waiter = asyncio.create_task(started.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()
        raise AssertionError("agent stopped during start-up")
    assert waiter in done, "agent did not start within 20 s"
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningAgent(config, f"http://{config.api.listen}", session)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def make_config(tmp_path: Path, printer_uri: str | None, **kwargs: Any) -> AgentConfig:
    """A validated config (validation looks up time zones on disk: off the loop)."""
    text = agent_toml(tmp_path / "data", free_port(), printer_uri, **kwargs)
    return await asyncio.to_thread(parse_config, tomllib.loads(text))


@pytest.fixture
async def agent(tmp_path: Path, printer: PrinterEmulator) -> AsyncIterator[RunningAgent]:
    async with start_agent(await make_config(tmp_path, printer.uri)) as running:
        yield running
