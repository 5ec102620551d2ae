"""Exactly once through a hostile uplink and crashes: sales at the store = sales in the cloud.

A POS posts sales while the uplink delays, hangs, resets, cuts answers and drops answers the
cloud already committed, and while the sync daemon and the cloud are killed with SIGKILL at
random moments. When the faults stop, the backlog drains by itself — no restart, no new sale —
and the cloud holds every sale exactly once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests.faultproxy import Fault
from tests.sync_e2e.harness import Deployment, sale_body

ROUNDS = 30
FAULT_WEIGHTS = {
    Fault.PASS: 4,
    Fault.DELAY: 1,
    Fault.HANG: 1,
    Fault.RESET: 1,
    Fault.CUT_RESPONSE: 1,
    Fault.DROP_AFTER_COMMIT: 2,
}


@pytest.mark.timeout(400)
async def test_sales_reach_the_cloud_exactly_once_through_faults_and_kills(
    tmp_path: Path,
) -> None:
    rng = random.Random(20261128)
    async with Deployment(tmp_path) as store, aiohttp.ClientSession() as session:
        assert store.proxy is not None
        assert store.sync is not None
        assert store.cloud is not None
        store.proxy.policy = lambda n: rng.choices(
            list(FAULT_WEIGHTS), weights=list(FAULT_WEIGHTS.values())
        )[0]
        posted: list[str] = []
        stop = asyncio.Event()

        async def pos() -> None:
            i = 0
            while not stop.is_set():
                body = sale_body(i)
                assert await store.post_sale(session, body) == 201
                posted.append(body["sale_id"])
                i += 1
                await asyncio.sleep(0.02)

        register = asyncio.create_task(pos())
        kills: Counter[str] = Counter()
        for round_no in range(ROUNDS):
            await asyncio.sleep(rng.uniform(0.1, 0.8))
            victim = store.sync if round_no % 2 == 0 else store.cloud
            await victim.kill()
            kills[victim.name] += 1
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            await victim.start()
            if victim is store.cloud:
                await store.wait_cloud()
        stop.set()
        await register

        store.proxy.heal()
        healed_at = time.monotonic()
        in_cloud: list[str] = []
        while time.monotonic() - healed_at < 180:
            in_cloud = await store.cloud_sales()
            if set(posted) <= set(in_cloud):
                break
            await asyncio.sleep(1.0)
        drained_s = time.monotonic() - healed_at
        status = await store.sync_status()

    missing = set(posted) - set(in_cloud)
    repeated = {sale for sale, n in Counter(in_cloud).items() if n > 1}
    assert not missing, f"{len(missing)} of {len(posted)} sales never reached the cloud"
    assert not repeated, f"sales in the cloud twice: {sorted(repeated)[:5]}"
    assert set(in_cloud) == set(posted)
    assert status["backlog"] == 0
    print(
        f"{len(posted)} sales, kills {dict(kills)}, uplink faults "
        f"{ {f.value: n for f, n in store.proxy.seen.items()} }: all in the cloud exactly once, "
        f"drained {drained_s:.1f} s after the faults stopped"
    )
