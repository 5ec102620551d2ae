"""The agent's data directory on a small filesystem that fills up.

New sales are refused with a clear error and nothing half-written; every sale acknowledged
before stays intact; writing resumes once space is freed, without a restart.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.agent.test_crash import start_agent_process, wait_ready
from tests.helpers import POS_KEY, agent_toml, free_port, make_sale

FS_BYTES = 3 * 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for this test (CI runs as root; so do store PCs' installers)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_BYTES},mode=0700", "tmpfs", str(mount)],
        check=True,
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path, leave: int) -> Path:
    """Fill the filesystem of ``path`` until ``leave`` bytes are free."""
    filler = path / "filler"
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize
    with filler.open("wb") as out:
        out.write(b"\0" * max(free - leave, 0))
    return filler


def table_counts(db: Path) -> tuple[int, int, int, list[str]]:
    conn = sqlite3.connect(db)
    try:
        sales = conn.execute("SELECT count(*) FROM sales").fetchone()[0]
        outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
        jobs = conn.execute("SELECT count(*) FROM print_jobs").fetchone()[0]
        ids = [row[0] for row in conn.execute("SELECT sale_id FROM sales")]
        (check,) = conn.execute("PRAGMA integrity_check").fetchone()
        assert check == "ok", check
    finally:
        conn.close()
    return sales, outbox, jobs, ids


async def test_full_disk_refuses_sales_cleanly_and_recovers(tmp_path: Path, small_fs: Path) -> None:
    port = free_port()
    config = tmp_path / "agent.toml"
    # No printer: this test is about the database, and a queue of jobs would only add writes.
    await asyncio.to_thread(config.write_text, agent_toml(small_fs / "data", port, None))
    proc = await start_agent_process(config, tmp_path / "agent.log")
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {POS_KEY}"}
    acked: list[str] = []
    refused: list[str] = []
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            await wait_ready(session, base, proc)
            filler = await asyncio.to_thread(fill, small_fs, 256 * 1024)
            for i in range(5000):
                sale = make_sale(i)
                async with session.post(f"{base}/v1/sales", json=sale) as resp:
                    body = await resp.json()
                if resp.status == 201:
                    acked.append(sale["sale_id"])
                    continue
                assert resp.status == 507, body
                assert body["error"] == "storage_full"
                assert "no space" in body["message"]
                refused.append(sale["sale_id"])
                if len(refused) >= 3:
                    break
            assert refused, "the filesystem never filled up"
            assert acked, "no sale fitted before the filesystem filled up"

            sales, outbox, jobs, ids = await asyncio.to_thread(
                table_counts, small_fs / "data" / "agent.db"
            )
            assert set(ids) == set(acked), "an acknowledged sale is missing or a refused one stored"
            assert (sales, outbox, jobs) == (len(acked), len(acked), 0)

            await asyncio.to_thread(filler.unlink)
            sale = make_sale(9999)
            async with session.post(f"{base}/v1/sales", json=sale) as resp:
                assert resp.status == 201, await resp.text()
            async with session.post(f"{base}/v1/sales", json=make_sale(10_000)) as resp:
                assert resp.status == 201
            async with session.get(f"{base}/v1/status") as resp:
                assert resp.status == 200
    finally:
        proc.terminate()
        await proc.wait()
    sales, _, _, ids = await asyncio.to_thread(table_counts, small_fs / "data" / "agent.db")
    assert sales == len(acked) + 2
    assert not set(refused) & set(ids)
    print(f"disk full after {len(acked)} sales: refused with 507, resumed after space was freed")
