"""The agent's GET /metrics: outbox depth and age, events by kind, print jobs, devices, latency."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from agent.api import Metrics
from agent.db import Database, Durability
from agent.outbox import NewEvent, Outbox, epoch_ms
from drivers.printer.emulator import EmulatedState, PrinterEmulator
from tests.agent.conftest import RunningAgent
from tests.helpers import make_sale
from tests.sync.conftest import eventually

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
FRONT = ("storelink_agent_device_available", (("kind", "printer"), ("name", "front")))


async def scrape(agent: RunningAgent) -> Samples:
    async with agent.session.get(agent.base + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_show_outbox_sales_print_jobs_printer_and_latency(
    agent: RunningAgent, printer: PrinterEmulator
) -> None:
    before = await scrape(agent)
    assert before[("storelink_agent_outbox_oldest_unsent_age_seconds", ())] == 0
    for i in range(3):
        status, _ = await agent.post_sale(make_sale(i))
        assert status == 201
    await printer.wait_for_jobs(3)
    assert (await scrape(agent))[FRONT] == 1
    printer.state = EmulatedState.PAPER_OUT
    status, _ = await agent.post_sale(make_sale(9))
    assert status == 201

    async def printer_down() -> bool:
        return (await scrape(agent))[FRONT] == 0

    await eventually(printer_down, 10)
    after = await scrape(agent)
    assert after[("storelink_agent_events_appended_total", (("kind", "sale"),))] == 4
    assert after[("storelink_agent_outbox_unsent", ())] == 4
    assert 0 < after[("storelink_agent_outbox_oldest_unsent_age_seconds", ())] < 60
    assert after[("storelink_agent_print_jobs", (("state", "queued"),))] == 1
    latency = ("storelink_agent_request_seconds_count", (("route", "/v1/sales"), ("status", "201")))
    assert after[latency] == 4


async def test_metrics_count_telemetry_by_kind_and_device_availability(
    agent: RunningAgent,
) -> None:
    await scrape(agent)
    now = datetime.now(UTC)
    # Another writer of the same file, as device services and the sync daemon are.
    async with Database(agent.db_path) as db:
        async with db.write(Durability.NORMAL) as conn:
            await conn.execute(
                "INSERT INTO device_status (kind, name, available, detail, checked_at)"
                " VALUES ('rfid', 'room-a', 0, 'connection refused', ?),"
                " ('camera', 'door', 1, 'ok', ?)",
                (now.isoformat(), now.isoformat()),
            )
        await Outbox(db).append_many(
            [NewEvent("tryon", {"i": i}, epoch_ms(now)) for i in range(5)]
            + [NewEvent("footfall", {"i": 0}, epoch_ms(now))]
        )
    after = await scrape(agent)
    assert after[("storelink_agent_events_appended_total", (("kind", "tryon"),))] == 5
    assert after[("storelink_agent_events_appended_total", (("kind", "footfall"),))] == 1
    assert after[("storelink_agent_device_available", (("kind", "rfid"), ("name", "room-a")))] == 0
    assert after[("storelink_agent_device_available", (("kind", "camera"), ("name", "door")))] == 1


async def test_concurrent_scrapes_count_each_event_once(tmp_path: Path) -> None:
    metrics = Metrics()
    now = datetime.now(UTC)
    async with Database(tmp_path / "agent.db") as db, Outbox(db) as outbox:
        await metrics.start(db)
        await outbox.append_many([NewEvent("tryon", {"i": i}, epoch_ms(now)) for i in range(7)])
        # Two Prometheus servers (or a retry) scraping at once must not both add the new rows.
        await asyncio.gather(*(metrics.refresh(db, outbox, epoch_ms(now)) for _ in range(3)))
    appended = metrics.registry.get_sample_value(
        "storelink_agent_events_appended_total", {"kind": "tryon"}
    )
    assert appended == 7
