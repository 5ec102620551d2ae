"""Telemetry ingest: tryon, wifi.window and footfall.window events through the signed endpoint,
exactly once, rejected per event with the field named, each store writing only its own rows;
sale lines keep their EPCs."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select

from cloud.db import utc
from cloud.ingest import Accepted, Rejected, validate_event
from cloud.schema import events, footfall_windows, sale_line_epcs, tryons, wifi_windows
from tests.cloud.conftest import Cloud, StoreClient, envelope, iso, sale_event

MINUTE = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
EPC = "3034257BF400B7800004CB2F"


def tryon_payload(**changes: Any) -> dict[str, Any]:
    """A valid tryon.v1 payload (events.md); changes override fields."""
    payload = {
        "session_id": secrets.token_hex(16),
        "reader": "fitting-1",
        "room": "room-2",
        "epc": EPC,
        "gtin": "00614141123452",
        "sku": "JKT-01",
        "started_at": iso(MINUTE),
        "ended_at": iso(MINUTE + timedelta(minutes=4, seconds=30)),
        "dwell_s": 270.0,
        "closed_by": "left",
    }
    return payload | changes


def wifi_payload(**changes: Any) -> dict[str, Any]:
    """A valid wifi.window v1 payload."""
    payload = {
        "window_start": iso(MINUTE),
        "window_s": 60,
        "sniffer": "front",
        "devices": 14,
        "visitors": 6,
        "passers_by": 8,
        "occupancy": 4.5,
        "dwell_hist": [3, 1, 0, 2, 0, 1],
        "new_devices": None,
        "repeat_devices": None,
        "fixed_excluded": 2,
        "frames": 812,
        "malformed": 3,
    }
    return payload | changes


def footfall_payload(**changes: Any) -> dict[str, Any]:
    """A valid footfall.window v1 payload."""
    payload = {
        "window_start": iso(MINUTE),
        "window_s": 60,
        "camera": "entrance",
        "in": 5,
        "out": 2,
        "occupancy": 17,
    }
    return payload | changes


KINDS = {"tryon": tryon_payload, "wifi.window": wifi_payload, "footfall.window": footfall_payload}


def telemetry_event(store_id: str, seq: int, kind: str, **changes: Any) -> dict[str, Any]:
    """An envelope of a telemetry kind with a valid payload (changes override fields)."""
    return envelope(store_id, seq, kind, KINDS[kind](**changes))


async def count(cloud: Cloud, table: Any) -> int:
    """Rows in a table."""
    async with cloud.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
async def store(cloud: Cloud) -> StoreClient:
    return await cloud.enroll("S001")


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_valid_payloads_of_each_kind_are_accepted(kind: str) -> None:
    outcome = validate_event(msgspec.json.encode(telemetry_event("S001", 1, kind)), "S001")
    assert isinstance(outcome, Accepted), outcome


W, F, T = "wifi.window", "footfall.window", "tryon"
REGEX = "Expected `str` matching regex"
EARLIER = iso(MINUTE - timedelta(seconds=1))


@pytest.mark.parametrize(
    ("kind", "changes", "reason"),
    [
        (W, {"dwell_hist": [1, 2, 3, 4, 5]}, "payload.dwell_hist: Expected `array` of length >= 6"),
        (W, {"dwell_hist": [0] * 7}, "payload.dwell_hist: Expected `array` of length <= 6"),
        (W, {"dwell_hist": [0, 0, -1, 0, 0, 0]}, "payload.dwell_hist[2]: Expected `int` >= 0"),
        (W, {"extra": 1}, "payload.extra: unknown field"),
        (W, {"visitors": -1}, "payload.visitors: Expected `int` >= 0"),
        (W, {"window_s": 600}, "payload.window_s: Invalid enum value 600"),
        (W, {"occupancy": -0.5}, "payload.occupancy: Expected `float` >= 0"),
        (W, {"new_devices": "3"}, "payload.new_devices: Expected `int | null`"),
        (F, {"in": -1}, "payload.in: Expected `int` >= 0"),
        (F, {"out": 1.5}, "payload.out: Expected `int`"),
        (F, {"mac": "aa:bb"}, "payload.mac: unknown field"),
        (F, {"window_s": 59}, "payload.window_s: Invalid enum value 59"),
        (T, {"epc": "3034257BF400B7800004CB2G"}, f"payload.epc: {REGEX}"),
        (T, {"epc": EPC.lower()}, f"payload.epc: {REGEX}"),
        (T, {"epc": EPC[:-1]}, f"payload.epc: {REGEX}"),
        (T, {"session_id": "abc"}, f"payload.session_id: {REGEX}"),
        (T, {"closed_by": "timeout"}, "payload.closed_by: Invalid enum value 'timeout'"),
        (T, {"dwell_s": -1}, "payload.dwell_s: Expected `float` >= 0"),
        (T, {"gtin": "123"}, f"payload.gtin: {REGEX}"),
        (T, {"rssi": -60}, "payload.rssi: unknown field"),
        (T, {"ended_at": EARLIER}, "payload: ended_at: earlier than started_at"),
    ],
)
def test_invalid_payloads_are_rejected_naming_the_field(
    kind: str, changes: dict[str, Any], reason: str
) -> None:
    event = telemetry_event("S001", 1, kind, **changes)
    outcome = validate_event(msgspec.json.encode(event), "S001")
    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith(reason), outcome.reason


@pytest.mark.parametrize("missing", ["gtin", "sku", "session_id"])
def test_tryon_fields_are_required_even_when_null(missing: str) -> None:
    event = telemetry_event("S001", 1, "tryon")
    del event["payload"][missing]
    outcome = validate_event(msgspec.json.encode(event), "S001")
    assert isinstance(outcome, Rejected)
    assert outcome.reason == f"payload.{missing}: missing"


# -- over HTTP -----------------------------------------------------------------------------


async def test_each_kind_becomes_its_row(cloud: Cloud, store: StoreClient) -> None:
    tryon = telemetry_event("S001", 1, "tryon", gtin=None, closed_by="max_duration")
    wifi = telemetry_event("S001", 2, "wifi.window", new_devices=4, repeat_devices=1)
    footfall = telemetry_event("S001", 3, "footfall.window")
    answer = await store.send_events([tryon, wifi, footfall])
    assert answer.status == 200
    assert answer.json()["stored"] == [tryon["id"], wifi["id"], footfall["id"]]
    assert answer.json()["rejected"] == []
    async with cloud.engine.connect() as conn:
        t = (await conn.execute(select(tryons))).one()
        w = (await conn.execute(select(wifi_windows))).one()
        f = (await conn.execute(select(footfall_windows))).one()
    p = tryon["payload"]
    assert (t.store_id, t.event_id, t.session_id, t.reader, t.room, t.epc) == (
        "S001", tryon["id"], p["session_id"], "fitting-1", "room-2", EPC,
    )  # fmt: skip
    assert (t.gtin, t.sku, t.dwell_s, t.closed_by) == (None, "JKT-01", 270.0, "max_duration")
    assert (utc(t.started_at), utc(t.ended_at)) == (MINUTE, MINUTE + timedelta(seconds=270))
    assert (w.store_id, w.sniffer, utc(w.window_start), w.event_id) == (
        "S001", "front", MINUTE, wifi["id"],
    )  # fmt: skip
    assert (w.devices, w.visitors, w.passers_by, w.occupancy) == (14, 6, 8, 4.5)
    assert msgspec.json.decode(w.dwell_hist) == [3, 1, 0, 2, 0, 1]
    assert (w.new_devices, w.repeat_devices, w.fixed_excluded, w.frames, w.malformed) == (
        4, 1, 2, 812, 3,
    )  # fmt: skip
    assert (f.store_id, f.camera, utc(f.window_start), f[5], f.out, f.occupancy) == (
        "S001", "entrance", MINUTE, 5, 2, 17,
    )  # fmt: skip
    metrics = (await cloud.get("/metrics")).text
    for kind in KINDS:
        assert f'storelink_cloud_events_ingested_total{{kind="{kind}"}} 1.0' in metrics


async def test_the_same_batch_twice_stores_one_row_each(cloud: Cloud, store: StoreClient) -> None:
    batch = [
        telemetry_event("S001", n, kind, window_start=iso(MINUTE + timedelta(minutes=n)))
        if kind != "tryon"
        else telemetry_event("S001", n, kind)
        for n, kind in enumerate(["tryon", "wifi.window", "footfall.window"] * 3, start=1)
    ]
    first = await store.send_events(batch)
    again = await store.send_events(batch)
    assert first.status == again.status == 200
    assert first.json() == again.json()
    assert len(first.json()["stored"]) == 9
    assert await count(cloud, events) == 9
    assert await count(cloud, tryons) == 3
    assert await count(cloud, wifi_windows) == 3
    assert await count(cloud, footfall_windows) == 3


async def test_a_session_or_window_resent_under_a_new_id_takes_effect_once(
    cloud: Cloud, store: StoreClient
) -> None:
    tryon = telemetry_event("S001", 1, "tryon")
    wifi = telemetry_event("S001", 2, "wifi.window")
    footfall = telemetry_event("S001", 3, "footfall.window")
    await store.send_events([tryon, wifi, footfall])
    # The same session and windows under new event ids, with other numbers: the first stands.
    again = [
        telemetry_event("S001", 4, "tryon", session_id=tryon["payload"]["session_id"], room="x"),
        telemetry_event("S001", 5, "wifi.window", devices=99),
        telemetry_event("S001", 6, "footfall.window", **{"in": 99}),
    ]
    answer = (await store.send_events(again)).json()
    assert answer["stored"] == [e["id"] for e in again]
    assert await count(cloud, tryons) == 1
    async with cloud.engine.connect() as conn:
        assert await conn.scalar(select(tryons.c.room)) == "room-2"
        assert await conn.scalar(select(wifi_windows.c.devices)) == 14
        assert await conn.scalar(select(footfall_windows.c["in"])) == 5


async def test_invalid_events_are_rejected_alone_and_nothing_of_them_is_written(
    cloud: Cloud, store: StoreClient
) -> None:
    good = telemetry_event("S001", 1, "wifi.window")
    bad_hist = telemetry_event("S001", 2, "wifi.window", dwell_hist=[1, 2, 3])
    bad_epc = telemetry_event("S001", 3, "tryon", epc="ZZ34257BF400B7800004CB2F")
    negative = telemetry_event("S001", 4, "footfall.window", out=-3)
    unknown = telemetry_event("S001", 5, "footfall.window", faces=2)
    answer = (await store.send_events([good, bad_hist, bad_epc, negative, unknown])).json()
    assert answer["stored"] == [good["id"]]
    reasons = {r["id"]: r["reason"].split(":")[0] for r in answer["rejected"]}
    assert reasons == {
        bad_hist["id"]: "payload.dwell_hist",
        bad_epc["id"]: "payload.epc",
        negative["id"]: "payload.out",
        unknown["id"]: "payload.faces",
    }
    assert await count(cloud, events) == 1
    assert await count(cloud, wifi_windows) == 1
    assert await count(cloud, tryons) == 0
    assert await count(cloud, footfall_windows) == 0


async def test_a_store_writes_only_its_own_rows(cloud: Cloud, store: StoreClient) -> None:
    other = await cloud.enroll("S002")
    # S002 claiming S001's store_id in the envelope: rejected, nothing written for S001.
    forged = telemetry_event("S001", 1, "footfall.window")
    answer = (await other.send_events([forged])).json()
    assert answer["stored"] == []
    assert answer["rejected"][0]["reason"].startswith("store_id: 'S001' is not this store (S002)")
    # S002 posting to S001's path with its own key: refused outright.
    path = "/v1/stores/S001/events"
    body = {"events": [forged]}
    refused = await other.request("POST", path, body, keyid="S002")
    assert refused.status in (401, 403)
    # Its own events land under its own id only.
    mine = telemetry_event("S002", 1, "footfall.window")
    assert (await other.send_events([mine])).json()["stored"] == [mine["id"]]
    async with cloud.engine.connect() as conn:
        owners = (await conn.scalars(select(footfall_windows.c.store_id))).all()
    assert owners == ["S002"]


# -- sale lines' EPCs ----------------------------------------------------------------------


async def test_sale_line_epcs_are_kept_upper_case(cloud: Cloud, store: StoreClient) -> None:
    sale = sale_event("S001", 1)
    sale["payload"]["lines"][1]["epcs"] = [EPC.lower(), "E2801160600002054CC2096F"]
    sale["payload"]["lines"][0]["epc"] = "aabbccdd"
    answer = (await store.send_events([sale])).json()
    assert answer["stored"] == [sale["id"]]
    async with cloud.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(sale_line_epcs.c.line_no, sale_line_epcs.c.epc).order_by(
                    sale_line_epcs.c.line_no, sale_line_epcs.c.epc
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (0, "AABBCCDD"),
        (1, EPC),
        (1, "E2801160600002054CC2096F"),
    ]
    again = (await store.send_events([sale])).json()
    assert again["stored"] == [sale["id"]]
    assert await count(cloud, sale_line_epcs) == 3


@pytest.mark.parametrize(
    ("epcs", "reason"),
    [
        (["3034257BF400B7800004CB2"], "payload.lines[1].epcs[0]: Expected `str` matching regex"),
        (["XX34257BF400B7800004CB2F"], "payload.lines[1].epcs[0]: Expected `str` matching regex"),
        ([EPC, EPC, EPC], "payload.lines[1]: epcs: 3 EPCs on a line of qty 2"),
        ("3034257BF400B7800004CB2F", "payload.lines[1].epcs: Expected `array`"),
    ],
)
def test_bad_sale_line_epcs_are_rejected(epcs: Any, reason: str) -> None:
    sale = sale_event("S001", 1)
    sale["payload"]["lines"][1]["epcs"] = epcs
    outcome = validate_event(msgspec.json.encode(sale), "S001")
    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith(reason), outcome.reason
