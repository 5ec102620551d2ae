"""The sync daemon's ``GET /metrics`` and its systemd notifications, against the real cloud.

The daemon reaches the cloud through a fault proxy that first resets every connection (the
backlog gauges must show the stuck events) and then heals (the counter and histogram must
show the upload and the gauges the drained backlog).
"""

from __future__ import annotations

import asyncio
import socket
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.config import ConfigError, parse_config
from agent.outbox import NewEvent, epoch_ms
from agent.sdnotify import Notifier
from agent.sync.app import run_sync
from tests.faultproxy import Fault, FaultProxy
from tests.helpers import agent_toml, free_port
from tests.sync.conftest import FAST, enrolled_store, running_cloud, sale_payload

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(session: aiohttp.ClientSession, url: str) -> Samples:
    async with session.get(url) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def eventually_scraped(
    session: aiohttp.ClientSession, url: str, name: str, wanted: float
) -> Samples:
    for _ in range(300):
        samples = await scrape(session, url)
        if value(samples, name) == wanted:
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never reached {wanted}")


async def test_sync_metrics_show_the_stuck_backlog_then_the_acknowledged_upload(
    tmp_path: Path,
) -> None:
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify.sock"))
        notify.setblocking(False)
        await _sync_until_drained(tmp_path, notify, url, metrics_port)


async def _sync_until_drained(
    tmp_path: Path, notify: socket.socket, url: str, metrics_port: int
) -> None:
    notifier = Notifier(str(tmp_path / "notify.sock"), watchdog_usec=400_000)
    loop = asyncio.get_running_loop()
    async with (
        running_cloud(tmp_path / "cloud") as cloud,
        FaultProxy(int(cloud.url.rsplit(":", 1)[1])) as proxy,
        aiohttp.ClientSession() as session,
    ):
        via = f"http://127.0.0.1:{proxy.port}"
        text = agent_toml(
            tmp_path / "store",
            free_port(),
            None,
            cloud_url=via,
            sync_metrics=f"127.0.0.1:{metrics_port}",
        )
        config = await asyncio.to_thread(parse_config, tomllib.loads(text))
        async with enrolled_store(config, cloud, via) as store:
            proxy.policy = lambda n: Fault.RESET
            at = epoch_ms(datetime.now(UTC) - timedelta(seconds=90))
            await store.outbox.append_many(
                [NewEvent("sale", sale_payload(i), at + i) for i in range(1, 4)]
            )
            stop, started = asyncio.Event(), asyncio.Event()
            daemon = asyncio.create_task(
                run_sync(config, stop, FAST, started, notifier=notifier), name="sync"
            )
            try:
                await asyncio.wait_for(started.wait(), 20)
                ready = await asyncio.wait_for(loop.sock_recv(notify, 4096), 5)
                while ready == b"WATCHDOG=1":
                    ready = await asyncio.wait_for(loop.sock_recv(notify, 4096), 5)
                assert ready.decode().splitlines()[0] == "READY=1"
                assert await asyncio.wait_for(loop.sock_recv(notify, 4096), 5) == b"WATCHDOG=1"

                stuck = await scrape(session, url)
                assert value(stuck, "storelink_sync_outbox_unsent") == 3
                assert 90 <= value(stuck, "storelink_sync_oldest_unsent_age_seconds") < 120
                assert value(stuck, "storelink_sync_last_success_timestamp_seconds") == 0
                assert value(stuck, "storelink_sync_events_acked_total") == 0

                proxy.heal()
                drained = await eventually_scraped(session, url, "storelink_sync_outbox_unsent", 0)
                assert value(drained, "storelink_sync_oldest_unsent_age_seconds") == 0
                assert value(drained, "storelink_sync_events_acked_total") == 3
                uploads = value(drained, "storelink_sync_upload_seconds_count", outcome="ok")
                assert uploads >= 1
                last = value(drained, "storelink_sync_last_success_timestamp_seconds")
                assert abs(time.time() - last) < 30
                # The cloud's side of the same uploads: latency by route template.
                cloud_side = await scrape(session, f"{cloud.url}/metrics")
                route = {"method": "POST", "route": "/v1/stores/{store_id}/events"}
                posted = value(
                    cloud_side, "storelink_cloud_request_seconds_count", **route, status="200"
                )
                assert posted >= 1
            finally:
                stop.set()
                await asyncio.wait_for(daemon, 20)
            messages = []
            while b"STOPPING=1" not in messages:
                messages.append((await asyncio.wait_for(loop.sock_recv(notify, 4096), 5))[:10])
            # The metrics port closes with the daemon.
            try:
                await scrape(session, url)
            except aiohttp.ClientConnectionError:
                pass
            else:
                raise AssertionError("the metrics port is still open after the daemon stopped")


def test_metrics_listen_is_loopback_by_default_and_empty_turns_it_off() -> None:
    base = agent_toml(Path("/var/lib/storelink"), 8380, None, sync_metrics=None)
    assert parse_config(tomllib.loads(base)).sync.metrics_listen == "127.0.0.1:8381"
    off = parse_config(tomllib.loads(base + '[sync]\nmetrics_listen = ""\n'))
    assert off.sync.metrics_listen == ""
    with pytest.raises(ConfigError, match=r"agent\.toml: sync\.metrics_listen: .*HOST:PORT"):
        parse_config(tomllib.loads(base + '[sync]\nmetrics_listen = "8381"\n'), "agent.toml")
