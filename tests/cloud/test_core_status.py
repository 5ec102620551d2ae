"""Heartbeats and GET /v1/sync-status: what each caller may see."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from cloud import appkeys
from cloud.db import begin_write, utc_now
from cloud.schema import heartbeats
from tests.cloud.conftest import Cloud, iso, sale_event

BEAT = {
    "at": "2026-11-28T10:15:00Z",
    "backlog": 12,
    "oldest_unsent_age_s": 42.4,
    "last_success_at": "2026-11-28T10:14:00Z",
    "last_error": "cloud answered 503",
    "rejected": 1,
    "devices": {"printer:front": {"available": True, "detail": "online"}},
    "version": "0.1.0",
}


async def test_heartbeat_is_shown_to_hq(cloud: Cloud) -> None:
    store = await cloud.enroll("S001", "east", name="Bars Store")
    answer = await store.request("POST", "/v1/stores/S001/heartbeat", BEAT)
    assert answer.status == 200
    assert answer.json() == {"epoch": cloud.app[appkeys.EPOCH]}
    await store.send_events([sale_event("S001", 1), sale_event("S001", 2) | {"kind": "bad"}])
    hq = await cloud.add_user("hq")
    status = (await cloud.get("/v1/sync-status", token=hq)).json()
    (entry,) = status["stores"]
    assert entry["store_id"] == "S001"
    assert entry["name"] == "Bars Store"
    assert entry["status"] == "active"
    assert entry["enrolled"] is True
    assert entry["online"] is True
    assert entry["backlog"] == 12
    assert entry["oldest_unsent_age_s"] == 42
    assert entry["last_success_at"] == "2026-11-28T10:14:00.000Z"
    assert entry["last_error"] == "cloud answered 503"
    assert entry["rejected"] == 1
    assert entry["rejected_in_cloud"] == 1
    assert entry["devices"] == BEAT["devices"]
    assert entry["sales_today_utc"] == 1
    assert entry["receipts_printed"] == 1
    assert entry["connection_rate"] == 0.0
    assert entry["last_event_received_at"] is not None


async def test_a_store_silent_for_three_minutes_is_offline(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    await store.request("POST", "/v1/stores/S001/heartbeat", BEAT)
    async with begin_write(cloud.engine) as conn:
        await conn.execute(update(heartbeats).values(at=utc_now() - timedelta(minutes=4)))
    hq = await cloud.add_user("hq")
    (entry,) = (await cloud.get("/v1/sync-status", token=hq)).json()["stores"]
    assert entry["online"] is False


async def test_regional_users_see_only_their_region(cloud: Cloud) -> None:
    await cloud.enroll("E1", "east")
    await cloud.enroll("E2", "east")
    await cloud.add_store("W1", "west")
    east = await cloud.add_user("regional", "east")
    west = await cloud.add_user("regional", "west")
    hq = await cloud.add_user("hq")

    async def ids(token: str) -> list[str]:
        return [
            s["store_id"]
            for s in (await cloud.get("/v1/sync-status", token=token)).json()["stores"]
        ]

    assert await ids(east) == ["E1", "E2"]
    assert await ids(west) == ["W1"]
    assert await ids(hq) == ["E1", "E2", "W1"]
    assert (await cloud.get("/v1/sync-status")).status == 401
    assert (await cloud.get("/v1/sync-status", token="forged")).status == 401


async def test_connection_rate_endpoint_respects_regions(cloud: Cloud) -> None:
    store = await cloud.enroll("E1", "east")
    await store.send_events([sale_event("E1", 1), sale_event("E1", 2)])
    east = await cloud.add_user("regional", "east")
    west = await cloud.add_user("regional", "west")
    answer = await cloud.get("/v1/stores/E1/connection-rate", token=east)
    assert answer.status == 200
    assert answer.json() == {"store_id": "E1", "claimed": 0, "printed": 2, "rate": 0.0}
    assert (await cloud.get("/v1/stores/E1/connection-rate", token=west)).status == 404
    assert (await cloud.get("/v1/stores/E1/connection-rate")).status == 401


async def test_bad_heartbeat_is_400(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    answer = await store.request(
        "POST", "/v1/stores/S001/heartbeat", {"backlog": -1, "rejected": 0}
    )
    assert answer.status == 400
    answer = await store.request(
        "POST", "/v1/stores/S001/heartbeat", {**BEAT, "at": iso(utc_now())}, compress=True
    )
    assert answer.status == 200


async def test_metrics_count_requests_and_events(cloud: Cloud) -> None:
    store = await cloud.enroll("S001")
    await store.send_events([sale_event("S001", 1)])
    text = (await cloud.get("/metrics")).text
    assert 'storelink_cloud_events_ingested_total{kind="sale"} 1.0' in text
    assert 'route="/v1/stores/{store_id}/events"' in text
