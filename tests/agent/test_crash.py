"""kill -9 of the agent process at random moments while a POS posts sales.

The POS retries an unanswered sale with the same sale_id, as a real register does. At the end
every acknowledged sale is in the database, every receipt came out of the printer, and no
receipt came out twice without the copy mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from drivers.printer.emulator import PrinterEmulator
from tests.helpers import POS_KEY, agent_toml, free_port, make_sale
from tests.qr import native_qr_payloads

ROUNDS = 20
COPY_MARK = b"** COPY **"


async def start_agent_process(config: Path, log: Path) -> asyncio.subprocess.Process:
    handle = await asyncio.to_thread(log.open, "ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--config",
            str(config),
            stdout=handle,
            stderr=asyncio.subprocess.STDOUT,
        )
    finally:
        await asyncio.to_thread(handle.close)


async def wait_ready(session: aiohttp.ClientSession, base: str, proc: Any) -> None:
    for _ in range(300):
        if proc.returncode is not None:
            raise AssertionError(f"agent exited with {proc.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{base}/v1/status", headers=_auth()) as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.05)
    raise AssertionError("agent did not come up")


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {POS_KEY}"}


class Pos:
    """A register that posts sales one after another and retries the unanswered one."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base
        self.acked: dict[str, str] = {}
        self.pending: dict[str, Any] | None = None
        self.counter = 0

    async def run(self) -> None:
        while True:
            if self.pending is None:
                self.counter += 1
                self.pending = make_sale(self.counter, staff=f"A{self.counter % 3}")
            await self.post_pending()

    async def post_pending(self) -> None:
        assert self.pending is not None
        try:
            async with self.session.post(
                f"{self.base}/v1/sales", json=self.pending, headers=_auth()
            ) as resp:
                body = await resp.json()
        except (TimeoutError, aiohttp.ClientError):
            await asyncio.sleep(0.05)
            return
        assert resp.status in (200, 201), body
        sale_id = self.pending["sale_id"]
        if sale_id in self.acked:
            assert self.acked[sale_id] == body["receipt_url"]
        self.acked[sale_id] = body["receipt_url"]
        self.pending = None


def read_db(path: Path) -> tuple[dict[str, str], Counter[str]]:
    conn = sqlite3.connect(path)
    try:
        sales = dict(conn.execute("SELECT sale_id, receipt_url FROM sales").fetchall())
        states = Counter(row[0] for row in conn.execute("SELECT state FROM print_jobs"))
    finally:
        conn.close()
    return sales, states


def jobs_of(path: Path, url: str) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT j.* FROM print_jobs j JOIN sales s USING (sale_id) WHERE s.receipt_url = ?",
            (url,),
        ).fetchall()
    finally:
        conn.close()


async def test_kill9_loses_no_sale_and_prints_no_unmarked_duplicate(
    tmp_path: Path, printer: PrinterEmulator
) -> None:
    port = free_port()
    config = tmp_path / "agent.toml"
    await asyncio.to_thread(config.write_text, agent_toml(tmp_path / "data", port, printer.uri))
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "agent.log"
    rng = random.Random(20261128)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        pos = Pos(session, base)
        for _ in range(ROUNDS):
            proc = await start_agent_process(config, log)
            await wait_ready(session, base, proc)
            poster = asyncio.create_task(pos.run())
            await asyncio.sleep(rng.uniform(0.02, 0.5))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            poster.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poster

        proc = await start_agent_process(config, log)
        await wait_ready(session, base, proc)
        while pos.pending is not None:
            await pos.post_pending()
        db_path = tmp_path / "data" / "agent.db"
        for _ in range(600):
            sales, states = await asyncio.to_thread(read_db, db_path)
            if states["queued"] == 0 and states["printing"] == 0:
                break
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0

    assert len(pos.acked) >= ROUNDS, "the POS got too few sales through to test anything"
    sales, states = await asyncio.to_thread(read_db, db_path)
    missing = {sid for sid in pos.acked if sid not in sales}
    assert not missing, f"acknowledged sales lost: {missing}"
    assert all(sales[sid] == url for sid, url in pos.acked.items())
    assert states["failed"] == 0

    originals: Counter[str] = Counter()
    printed: set[str] = set()
    for job in printer.jobs:
        for url in native_qr_payloads(job.data):
            printed.add(url)
            if COPY_MARK not in job.data:
                originals[url] += 1
    unprinted = set(sales.values()) - printed
    assert not unprinted, f"{len(unprinted)} of {len(sales)} sales never printed; jobs {states}"
    twice = {url: n for url, n in originals.items() if n > 1}
    if twice:
        url = next(iter(twice))
        detail = [
            (j.number, len(j.data), j.data.count(b"\x1dV"), j.started)
            for j in printer.jobs
            if url in native_qr_payloads(j.data)
        ]
        rows = await asyncio.to_thread(jobs_of, db_path, url)
        raise AssertionError(f"printed twice without the copy mark: {detail} {rows}")
    copies = sum(1 for j in printer.jobs if COPY_MARK in j.data)
    print(
        f"kill -9 x{ROUNDS}: {len(pos.acked)} sales acknowledged, all kept; "
        f"{len(printer.jobs)} print jobs, {copies} copies"
    )
