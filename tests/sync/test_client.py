"""The signed client: every attempt signed afresh, answers translated into one error tree."""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agent.storekey import load_or_create_store_key
from agent.sync.client import BadAnswer, CloudClient, CloudRejected, CloudUnavailable
from tests.faultproxy import Fault, FaultProxy
from tests.helpers import free_port
from tests.sync.conftest import Cloud, Store


async def test_a_retried_request_carries_a_fresh_nonce(store: Store, cloud: Cloud) -> None:
    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    port = int(cloud.url.rsplit(":", 1)[1])
    async with FaultProxy(port) as proxy:
        # The first answer is lost after the cloud recorded the nonce; aiohttp retries the GET.
        proxy.policy = lambda n: Fault.DROP_AFTER_COMMIT if n == 0 else Fault.PASS
        async with CloudClient(f"http://127.0.0.1:{proxy.port}", "S001", key) as client:
            state = await client.get_sync_state()
    assert state.epoch == cloud.epoch
    assert proxy.seen[Fault.DROP_AFTER_COMMIT] == 1


async def test_the_cloud_refusing_a_signature_is_a_rejection(store: Store, cloud: Cloud) -> None:
    other = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir / "x")
    async with CloudClient(cloud.url, "S001", other) as client:
        with pytest.raises(CloudRejected, match="401 bad_signature") as caught:
            await client.get_changes(0, 10)
    assert caught.value.status == 401


@contextlib.asynccontextmanager
async def answering(
    store: Store, status: int, body: bytes, content_type: str
) -> AsyncIterator[CloudClient]:
    """A client of a server that gives every request the same answer."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=status, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    try:
        async with CloudClient(str(server.make_url("")).rstrip("/"), "S001", key) as client:
            yield client
    finally:
        await server.close()


async def test_a_garbled_answer_is_a_bad_answer(store: Store) -> None:
    async with answering(store, 200, b'{"epoch": "e", "stored": "all"}', "application/json") as c:
        with pytest.raises(BadAnswer, match="POST events: the cloud's answer is not valid"):
            await c.post_events(b"")


async def test_a_proxy_error_page_is_unavailability(store: Store) -> None:
    async with answering(store, 502, b"<html>bad gateway</html>", "text/html") as c:
        with pytest.raises(CloudUnavailable, match=r"502 Bad Gateway$") as caught:
            await c.get_sync_state()
    assert caught.value.retry_after_s is None


async def test_a_refusal_names_the_clouds_reason(store: Store) -> None:
    error = json.dumps({"error": "too_large", "message": "body is larger"}).encode()
    async with answering(store, 413, error, "application/json") as c:
        with pytest.raises(CloudRejected, match="413 too_large: body is larger"):
            await c.post_events(b"x")


async def test_no_cloud_is_unavailability(store: Store) -> None:
    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    async with CloudClient(f"http://127.0.0.1:{free_port()}", "S001", key) as client:
        with pytest.raises(CloudUnavailable, match="ClientConnectorError"):
            await client.get_sync_state()
