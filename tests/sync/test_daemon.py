"""The daemon as a whole: sales reach the cloud, heartbeats report, faults end without a
restart, Retry-After is honoured, SIGTERM stops it, and it stays small."""

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.storekey import load_or_create_store_key
from agent.sync.app import run_sync
from agent.sync.backoff import Backoff
from agent.sync.client import AlreadyRunning, CloudClient, NotEnrolled
from agent.sync.epoch import EpochKeeper
from agent.sync.loop import SyncLoop
from agent.sync.state import read_status
from agent.sync.upload import Uploader
from tests.faultproxy import Fault, FaultProxy
from tests.sync.conftest import (
    FAST,
    Cloud,
    Store,
    daemon,
    enrolled_store,
    eventually,
    store_config,
)

MAX_RSS_KB = 80 * 1024


async def test_heartbeat_tells_regional_staff_how_the_store_is(store: Store, cloud: Cloud) -> None:
    await store.add_sales(5)
    async with store.db.write() as conn:
        await conn.execute(
            "INSERT INTO printer_status VALUES ('front', 0, 'paper out', '2026-11-28T10:00:00Z')"
        )
    async with daemon(store.config):

        async def reported() -> bool:
            status = await cloud.hq_ok("GET", "/v1/sync-status")
            (entry,) = status["stores"]
            return bool(entry["online"]) and entry["backlog"] == 0 and entry["last_success_at"]

        await eventually(reported)
    (entry,) = (await cloud.hq_ok("GET", "/v1/sync-status"))["stores"]
    assert entry["devices"] == {"printer:front": {"available": False, "detail": "paper out"}}
    assert entry["rejected"] == 0
    assert entry["last_error"] is None
    assert await cloud.scalar("SELECT count(*) FROM sales") == 5


async def test_the_backlog_drains_once_the_cloud_is_back_without_a_restart(
    tmp_path: Path, cloud: Cloud
) -> None:
    port = int(cloud.url.rsplit(":", 1)[1])
    async with FaultProxy(port) as proxy:
        via = f"http://127.0.0.1:{proxy.port}"
        config = await store_config(tmp_path, via)
        async with enrolled_store(config, cloud, via) as store:
            proxy.policy = lambda n: Fault.RESET
            await store.add_sales(30)
            async with daemon(config):

                async def failing() -> bool:
                    return (await read_status(store.db.reader)).last_error is not None

                await eventually(failing)
                status = await read_status(store.db.reader)
                assert status.backlog == 30
                assert status.last_error is not None
                assert status.last_error.startswith(("upload: ", "download: ", "heartbeat: "))
                proxy.heal()

                async def drained() -> bool:
                    return await store.unsent() == 0

                await eventually(drained)
                # Each loop clears its error once it works again.
                await eventually(lambda: _no_error(store))
    assert await cloud.scalar("SELECT count(*) FROM events") == 30


async def _no_error(store: Store) -> bool:
    return (await read_status(store.db.reader)).last_error is None


@contextlib.asynccontextmanager
async def busy_cloud(status: int, retry_after: str | None) -> AsyncIterator[str]:
    """A server that answers every request with status (and Retry-After)."""

    async def answer(request: web.Request) -> web.Response:
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        body = json.dumps({"error": "busy", "message": "the database is busy"})
        return web.Response(status=status, text=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.mark.parametrize(("status", "header", "at_least"), [(503, "7", 7.0), (429, "3", 3.0)])
async def test_retry_after_is_honoured(
    store: Store, status: int, header: str, at_least: float
) -> None:
    await store.add_sales(1)
    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    async with busy_cloud(status, header) as url, CloudClient(url, "S001", key) as client:
        epochs = EpochKeeper(store.db, client)
        up = Uploader(store.db, client, epochs, "S001", FAST)
        backoff = Backoff(base_s=0.01, cap_s=0.05)
        loop = SyncLoop("upload", up.drain, 1.0, db=store.db, epochs=epochs, backoff=backoff)
        delays = [await loop.run_once() for _ in range(3)]
    assert all(at_least <= d for d in delays)
    status_now = await read_status(store.db.reader)
    assert status_now.last_error is not None
    assert f"{status} busy" in status_now.last_error
    assert status_now.backlog == 1


async def test_without_retry_after_the_backoff_is_jittered_and_capped(store: Store) -> None:
    await store.add_sales(1)
    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    async with busy_cloud(503, None) as url, CloudClient(url, "S001", key) as client:
        epochs = EpochKeeper(store.db, client)
        up = Uploader(store.db, client, epochs, "S001", FAST)
        backoff = Backoff(base_s=0.01, cap_s=0.05)
        loop = SyncLoop("upload", up.drain, 1.0, db=store.db, epochs=epochs, backoff=backoff)
        delays = [await loop.run_once() for _ in range(10)]
    assert all(0 <= d <= 0.05 for d in delays)


async def test_a_store_that_has_not_enrolled_cannot_sync(tmp_path: Path) -> None:
    config = await store_config(tmp_path, "http://127.0.0.1:9")
    with pytest.raises(NotEnrolled, match="enroll"):
        await run_sync(config, asyncio.Event())
    await asyncio.to_thread(config.store.data_dir.mkdir, parents=True)
    with pytest.raises(NotEnrolled, match="storelink-agent enroll --config FILE"):
        await run_sync(config, asyncio.Event())


async def test_one_daemon_per_data_dir(store: Store) -> None:
    async with daemon(store.config):
        with pytest.raises(AlreadyRunning, match="already running"):
            await run_sync(store.config, asyncio.Event())


async def test_the_process_drains_within_its_memory_budget_and_stops_on_sigterm(
    tmp_path: Path, store: Store
) -> None:
    if not await asyncio.to_thread(Path("/proc/self/status").exists):
        pytest.skip("reads peak RSS from /proc")
    await store.add_sales(12_000)
    config = tmp_path / "agent.toml"
    await asyncio.to_thread(
        config.write_text,
        f'[store]\nid = "S001"\ndata_dir = "{store.config.store.data_dir}"\n'
        f'[api]\nkey = "pos-key-123"\n[cloud]\nurl = "{store.config.cloud.url}"\n'
        '[sync]\nmetrics_listen = ""\n'
        '[[printers]]\nname = "front"\nuri = "socket://127.0.0.1:9"\nprofile = "no-such-model"\n',
    )
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "storelink-sync"),
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:

        async def drained() -> bool:
            assert proc.returncode is None, "storelink-sync exited"
            return await store.unsent() == 0

        await eventually(drained, within_s=60)
        status = await asyncio.to_thread(Path(f"/proc/{proc.pid}/status").read_text)
        peak_kb = int(
            next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()
    assert b"sync stopping" in out
    assert peak_kb < MAX_RSS_KB, f"peak RSS {peak_kb} kB"
