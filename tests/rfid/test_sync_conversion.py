"""Try-ons end to end: simulator → agent (process) → sync daemon → cloud conversion report.

Real processes started the way store IT starts them (tests/sync_e2e/harness.py): the cloud,
the agent with an [rfid] reader pointing at an LLRP simulator in this test, the sync daemon.
The catalogue is put at the cloud and reaches the agent's replica through the sync daemon.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from drivers.rfid.simulator import ReaderSimulator
from tests.helpers import free_port
from tests.rfid.streams import CATALOGUE, DRESS, JACKET, US, in_order, rfid_toml, stream
from tests.sync_e2e.harness import Deployment, run_cli, sale_body


@dataclass
class RfidDeployment(Deployment):
    """The harness's deployment, its agent config given an [rfid] section."""

    rfid: str = ""

    def _write_agent_config(self) -> None:
        super()._write_agent_config()
        with self.agent_config.open("a") as config:
            config.write(self.rfid)


def replica_skus(db: Path) -> set[str]:
    """SKUs in the agent's catalogue replica (read-only)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT sku FROM catalogue")}
    finally:
        conn.close()


async def poll(check: Any, what: str, within_s: float = 40.0) -> Any:
    """Await ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def test_tryons_reach_the_cloud_conversion_report(tmp_path: Path) -> None:
    sim_port = free_port()
    rfid = rfid_toml(
        {"rooms-a": (sim_port, {1: "room-1", 2: "room-2"})},
        window_s=1.0,
        min_dwell_s=10.0,
        end_after_s=2.0,
    )
    async with (
        ReaderSimulator(port=sim_port) as sim,
        RfidDeployment(tmp_path, rfid=rfid) as deployment,
    ):
        headers = {"Authorization": f"Bearer {deployment.hq_token}"}
        async with aiohttp.ClientSession() as http:
            for sku, gtin, name, price, currency, category in CATALOGUE:
                body = {
                    "gtin": gtin,
                    "name": name,
                    "price": price,
                    "currency": currency,
                    "category": category,
                }
                async with http.put(
                    f"{deployment.cloud_url}/v1/catalogue/{sku}", json=body, headers=headers
                ) as resp:
                    assert resp.status in (200, 201), await resp.text()

            async def replicated() -> bool:
                skus = await asyncio.to_thread(replica_skus, deployment.agent_db)
                return skus >= {row[0] for row in CATALOGUE}

            await poll(replicated, "the catalogue in the agent's replica")
            await sim.wait_inventorying(30)
            # The reader reports 40 s of fitting-room reads that it had buffered: the jacket
            # in room-1 and the dress in room-2, each cross-read by the other room's antenna.
            origin = time.time_ns() // 1000 - 45 * US
            sim.inject(
                in_order(
                    stream("rooms-a", JACKET, 0, 40, origin_us=origin, antenna=1, hz=5),
                    stream("rooms-a", JACKET, 0, 40, origin_us=origin, antenna=2, rssi=-66, hz=2),
                    stream("rooms-a", DRESS, 2, 38, origin_us=origin, antenna=2, hz=5),
                    stream("rooms-a", DRESS, 2, 38, origin_us=origin, antenna=1, rssi=-67, hz=2),
                )
            )
            # The shopper buys the jacket; the POS read its tag at the till.
            sale = sale_body(1, at=datetime.now(UTC))
            sale["lines"][0].update(sku="JKT-RED-M", name="Trail jacket", epcs=[JACKET.hex()])
            assert await deployment.post_sale(http, sale) == 201

        async def report() -> list[dict[str, Any]]:
            out = await run_cli(
                "storelink-cloud",
                "export",
                "tryons",
                "--config",
                str(deployment.cloud_config),
                "--format",
                "ndjson",
                "--out",
                "-",
            )
            rows = [json.loads(line) for line in out.splitlines() if line.strip()]
            return rows if sum(row["tryons"] for row in rows) >= 2 else []

        rows = await poll(report, "two try-ons in the cloud's conversion report")
    by_sku = {row["sku"]: row for row in rows}
    jacket, dress = by_sku["JKT-RED-M"], by_sku["DRS-BLU-S"]
    assert (jacket["tryons"], jacket["converted"], jacket["purchases"]) == (1, 1, 1)
    assert jacket["conversion"] == 1.0
    assert (dress["tryons"], dress["converted"], dress["purchases"]) == (1, 0, 0)
    assert jacket["store_id"] == dress["store_id"] == deployment.store_id
