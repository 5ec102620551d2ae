"""The fault proxy does what the sync tests rely on: each fault, against a real HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from tests.faultproxy import Fault, FaultProxy


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[int, list[bytes]]]:
    committed: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        committed.append(await request.read())
        return web.Response(text="x" * 500)

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield port, committed
    await runner.cleanup()


async def post(port: int) -> tuple[int, str]:
    timeout = aiohttp.ClientTimeout(total=2)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.post(f"http://127.0.0.1:{port}/", data=b"batch") as resp,
    ):
        return resp.status, await resp.text()


@pytest.mark.parametrize(
    ("fault", "reaches_cloud"),
    [
        (Fault.HANG, False),
        (Fault.RESET, False),
        (Fault.CUT_RESPONSE, True),
        (Fault.DROP_AFTER_COMMIT, True),
    ],
)
async def test_faults_fail_the_client(
    upstream: tuple[int, list[bytes]], fault: Fault, reaches_cloud: bool
) -> None:
    port, committed = upstream
    async with FaultProxy(port) as proxy:
        proxy.policy = lambda n: fault
        with pytest.raises((aiohttp.ClientError, TimeoutError)):
            await post(proxy.port)
        assert proxy.seen[fault] == 1
    assert committed == ([b"batch"] if reaches_cloud else [])


async def test_pass_and_delay_answer(upstream: tuple[int, list[bytes]]) -> None:
    port, committed = upstream
    async with FaultProxy(port, delay_s=0.05) as proxy:
        proxy.policy = lambda n: Fault.DELAY if n == 0 else Fault.PASS
        assert await post(proxy.port) == (200, "x" * 500)
        assert await post(proxy.port) == (200, "x" * 500)
    assert committed == [b"batch", b"batch"]
