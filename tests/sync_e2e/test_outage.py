"""A week without the cloud: every day's sales wait at the store and drain when it returns."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.sync_e2e.harness import Deployment, sale_body

DAYS = 7
SALES_PER_DAY = 150


@pytest.mark.timeout(300)
async def test_week_long_outage_drains_completely(tmp_path: Path) -> None:
    async with Deployment(tmp_path) as store, aiohttp.ClientSession() as session:
        assert store.cloud is not None
        await store.cloud.stop()
        posted: list[str] = []
        start = datetime.now(UTC) - timedelta(days=DAYS)
        for day in range(DAYS):
            opening = start + timedelta(days=day, hours=9)
            for i in range(SALES_PER_DAY):
                body = sale_body(i, at=opening + timedelta(minutes=4 * i))
                assert await store.post_sale(session, body) == 201
                posted.append(body["sale_id"])
        status = await store.sync_status()
        assert status["backlog"] >= DAYS * SALES_PER_DAY
        assert status["oldest_unsent_age_s"] >= (DAYS - 1) * 86_400

        await store.cloud.start()
        await store.wait_cloud()
        back_at = time.monotonic()
        in_cloud: list[str] = []
        while time.monotonic() - back_at < 120:
            in_cloud = await store.cloud_sales()
            if len(set(in_cloud)) >= len(posted):
                break
            await asyncio.sleep(1.0)
        drained_s = time.monotonic() - back_at
        status = await store.sync_status()

    assert sorted(in_cloud) == sorted(posted)
    assert status["backlog"] == 0
    print(f"{len(posted)} sales over {DAYS} offline days drained in {drained_s:.1f} s")
