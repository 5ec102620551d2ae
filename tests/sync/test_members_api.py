"""The associate's member look-up and tag changes at the store, and receipt footer offers
chosen from the replica: the real agent, the real daemon and the real cloud."""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from drivers.printer.emulator import PrinterEmulator
from tests.agent.conftest import RunningAgent, start_agent
from tests.helpers import make_sale
from tests.sync.conftest import Cloud, daemon, enrolled_store, eventually, store_config
from tests.sync.test_download import NAME, seed


@pytest.fixture
async def printer() -> AsyncIterator[PrinterEmulator]:
    async with PrinterEmulator(host="127.0.0.1", port=0) as emulator:
        yield emulator


@pytest.fixture
async def agent(
    tmp_path: Path, cloud: Cloud, printer: PrinterEmulator
) -> AsyncIterator[RunningAgent]:
    """Store S001 with its slice pulled (members M-1 high-value, M-2 no segment), agent and
    daemon running."""
    config = await store_config(tmp_path, cloud.url, printer.uri)
    async with enrolled_store(config, cloud) as store:
        await seed(cloud)
        m2 = {"name": "Zhou", "consent": True, "home_store": "S001"}
        await cloud.hq_ok("PUT", "/v1/members/M-2", m2)
        async with daemon(config):

            async def pulled() -> bool:
                return bool(await store.value("SELECT count(*) FROM members") == 2)

            await eventually(pulled)
            async with start_agent(config) as running:
                yield running


async def test_member_view_shows_what_the_associate_needs(agent: RunningAgent) -> None:
    status, view = await agent.request("GET", "/v1/members/M-1")
    assert status == 200, view
    assert view == {
        "id": "M-1",
        "name": NAME,
        "phone": "+*********5678",
        "consent": True,
        "tags": ["runner", "vip"],
        "segments": [{"id": "vip", "name": "VIP", "high_value": True}],
        "home_store": "S001",
        "associate": {"id": "A07", "name": "Li Na", "active": True},
    }
    assert await agent.request("GET", "/v1/members/M-404") == (
        404,
        {"error": "not_found", "message": "no member with this id in this store's slice"},
    )
    assert (await agent.request("GET", "/v1/members/M-1", key="wrong-key"))[0] == 401


async def test_tags_apply_at_once_and_merge_in_the_cloud(agent: RunningAgent, cloud: Cloud) -> None:
    change = {"add": ["gift-wrap"], "remove": ["runner"], "staff_id": "A07"}
    status, view = await agent.request("POST", "/v1/members/M-1/tags", change)
    assert status == 200, view
    assert view["tags"] == ["gift-wrap", "vip"]
    assert (await agent.request("GET", "/v1/members/M-1"))[1]["tags"] == ["gift-wrap", "vip"]

    rows = await _rows(agent, "SELECT kind, schema_version, payload FROM outbox")
    assert [(kind, v) for kind, v, _ in rows] == [("member.tags", 1)]
    payload = json.loads(rows[0][2])
    assert payload["member_id"] == "M-1"
    assert payload["staff_id"] == "A07"
    assert sorted((op["op"], op["tag"]) for op in payload["ops"]) == [
        ("add", "gift-wrap"),
        ("remove", "runner"),
    ]
    assert len({op["op_id"] for op in payload["ops"]}) == 2

    async def merged() -> bool:
        found = await cloud.hq_ok("GET", "/v1/members/M-1")
        return sorted(found["tags"]) == ["gift-wrap", "vip"]

    await eventually(merged)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"add": ["x" * 41]}, "add[0]"),
        ({"add": [""]}, "add[0]"),
        ({"add": [f"t{i}" for i in range(30)], "remove": [f"r{i}" for i in range(21)]}, "(top"),
        ({}, "(top level)"),
        ({"add": ["a"], "remove": ["a"]}, "(top level)"),
        ({"add": ["a"], "color": "red"}, "color"),
        ({"add": "a"}, "add"),
        ({"add": ["a"], "staff_id": ""}, "staff_id"),
    ],
)
async def test_invalid_tag_changes_are_refused_and_record_nothing(
    agent: RunningAgent, body: dict[str, Any], field: str
) -> None:
    status, answer = await agent.request("POST", "/v1/members/M-1/tags", body)
    assert status == 422, answer
    assert answer["error"] == "invalid_tags"
    assert answer["fields"][0]["field"].startswith(field)
    assert await _rows(agent, "SELECT * FROM outbox") == []


async def test_tags_for_a_member_outside_the_slice(agent: RunningAgent) -> None:
    assert (await agent.request("POST", "/v1/members/M-404/tags", {"add": ["a"]}))[0] == 404
    assert (await agent.request("POST", "/v1/members/M-1/tags", raw=b"{nope"))[0] == 400
    assert await _rows(agent, "SELECT * FROM outbox") == []


async def test_receipt_offer_follows_segments_and_spares_high_value_members_clearance(
    agent: RunningAgent, printer: PrinterEmulator
) -> None:
    for i, member in enumerate(("M-1", "M-2", None), start=1):
        status, answer = await agent.post_sale(make_sale(i, member=member))
        assert status == 201, answer
    jobs = await printer.wait_for_jobs(3, timeout=10)
    offers = await _rows(agent, "SELECT receipt_seq, offer FROM sales ORDER BY receipt_seq")
    assert offers == [(1, "Private preview"), (2, "Clearance 70% off"), (3, None)]
    assert b"Private preview" in jobs[0].data
    assert b"Clearance" not in jobs[0].data
    assert b"Clearance 70% off" in jobs[1].data
    assert b"Clearance" not in jobs[2].data
    assert b"preview" not in jobs[2].data
    # The sale event stays as sale.v1.json has it: no offer in the payload.
    payloads = await _rows(agent, "SELECT payload FROM outbox WHERE kind = 'sale'")
    assert all("offer" not in json.loads(p) for (p,) in payloads)


async def _rows(agent: RunningAgent, sql: str) -> list[Any]:
    import asyncio
    import sqlite3

    def read() -> list[Any]:
        conn = sqlite3.connect(agent.db_path)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    return await asyncio.to_thread(read)
