"""Try-on → purchase conversion: a hand-made day of try-ons and sales, its report worked out by
hand (SKU match, EPC match, outside the window, another store's sale, a sale before the try-on,
two try-ons and one sale), the window's exact edge, and the window from config."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from cloud.config import ConfigError, parse_config
from tests.cloud.conftest import Cloud, StoreClient, cloud_toml, envelope, iso, sale_event
from tests.cloud.test_telemetry_export import _export
from tests.cloud.test_telemetry_ingest import tryon_payload

D = datetime(2026, 11, 20, tzinfo=UTC)
D1 = D + timedelta(days=1)
SHOE_GTIN = "04012345000017"
E1, E2, E5, E7, E8 = (f"3034257BF400B78000{n:06X}" for n in (1, 2, 5, 7, 8))


def at(day: datetime, hh: int, mm: int, ms: int = 0) -> datetime:
    return day + timedelta(hours=hh, minutes=mm, milliseconds=ms)


class Store:
    """Sends try-ons and sales of one store through the signed endpoint."""

    def __init__(self, client: StoreClient) -> None:
        self.client = client
        self.seq = 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def tryon(
        self, sku: str | None, start: datetime, end: datetime, epc: str, gtin: str | None = None
    ) -> dict[str, Any]:
        payload = tryon_payload(
            sku=sku,
            gtin=gtin,
            epc=epc,
            started_at=iso(start),
            ended_at=iso(end),
            dwell_s=(end - start).total_seconds(),
        )
        return envelope(self.client.store_id, self._next(), "tryon", payload)

    def sale(self, when: datetime, *lines: dict[str, Any]) -> dict[str, Any]:
        event = sale_event(self.client.store_id, self._next())
        event["payload"]["occurred_at"] = iso(when)
        event["payload"]["lines"] = [
            {"name": "item", "unit_price": 1000, "discount": 0} | line for line in lines
        ]
        return event

    async def send(self, *events: dict[str, Any]) -> None:
        answer = (await self.client.send_events(list(events))).json()
        assert answer["rejected"] == []
        assert len(answer["stored"]) == len(events)


async def _report(cloud: Cloud, dataset: str = "tryons", extra: str = "") -> list[dict[str, Any]]:
    config = parse_config(cloud_toml(Path("/nonexistent"), extra)) if extra else None
    data = await _export(cloud, dataset, "ndjson", config=config)
    return [msgspec.json.decode(line) for line in data.splitlines()]


@pytest.fixture
async def day(cloud: Cloud) -> None:
    """The hand-made day (all UTC; the conversion window is the default 120 minutes)."""
    hq = await cloud.add_user("hq")
    async with cloud.session.put(
        cloud.base_url + "/v1/catalogue/SHO",
        headers={"Authorization": f"Bearer {hq}"},
        json={"gtin": SHOE_GTIN, "name": "Shoe", "price": 1, "currency": "CNY", "category": "x"},
    ) as resp:
        assert resp.status in (200, 201), await resp.text()
    a = Store(await cloud.enroll("A1", "east"))
    b = Store(await cloud.enroll("B1", "east"))
    c = Store(await cloud.enroll("C1", "west"))
    await a.send(
        # JKT: two try-ons, one sale 55 min after the second ends -> both convert.
        a.tryon("JKT", at(D, 10, 0), at(D, 10, 5), E1),
        a.tryon("JKT", at(D, 10, 10), at(D, 10, 15), E2),
        a.sale(at(D, 11, 0), {"sku": "JKT", "qty": 1}),
        # DRS: sold 140 min after the try-on ended -> outside the window.
        a.tryon("DRS", at(D, 10, 0), at(D, 10, 10), E1[:-1] + "9"),
        a.sale(at(D, 12, 30), {"sku": "DRS", "qty": 2}),
        # PNT: sold 25 min later, but in store B1 -> not A1's conversion.
        a.tryon("PNT", at(D, 14, 0), at(D, 14, 5), E1[:-1] + "A"),
        # SHO: the try-on has only a GTIN, the sale line only a GTIN (both resolve to SHO
        # through the catalogue); the sale came an hour before the try-on -> no conversion.
        a.sale(at(D, 14, 0), {"gtin": SHOE_GTIN, "qty": 1}),
        a.tryon(None, at(D, 15, 0), at(D, 15, 5), E5, gtin=SHOE_GTIN),
        # HAT: two garments tried; the next morning (18 h later) garment E7 is sold with its
        # EPC on the line (lower case) -> E7's try-on converts by EPC, E8's does not.
        a.tryon("HAT", at(D, 16, 0), at(D, 16, 5), E7),
        a.tryon("HAT", at(D, 17, 0), at(D, 17, 5), E8),
        a.sale(
            at(D1, 10, 0),
            {"sku": "HAT", "qty": 1, "epcs": [E7.lower()]},
            {"sku": "SOCK", "qty": 3},
        ),
    )
    await b.send(
        b.tryon("PNT", at(D, 14, 0), at(D, 14, 10), E1[:-1] + "B"),
        b.sale(at(D, 14, 30), {"sku": "PNT", "qty": 1}),
    )
    # C1 never sent a try-on: its sales are not in the report.
    await c.send(c.sale(at(D, 11, 0), {"sku": "JKT", "qty": 5}))


def _row(day: datetime, store: str, sku: str, tried: int, converted: int, bought: int) -> Any:
    return {
        "day": day.date().isoformat(),
        "store_id": store,
        "sku": sku,
        "tryons": tried,
        "converted": converted,
        "purchases": bought,
        "conversion": converted / tried if tried else None,
    }


async def test_the_report_matches_the_hand_computed_one(cloud: Cloud, day: None) -> None:
    assert await _report(cloud) == [
        _row(D, "A1", "DRS", 1, 0, 2),
        _row(D, "A1", "HAT", 2, 1, 0),
        _row(D, "A1", "JKT", 2, 2, 1),
        _row(D, "A1", "PNT", 1, 0, 0),
        _row(D, "A1", "SHO", 1, 0, 1),
        _row(D, "B1", "PNT", 1, 1, 1),
        _row(D1, "A1", "HAT", 0, 0, 1),
        _row(D1, "A1", "SOCK", 0, 0, 3),
    ]


async def test_sessions_say_which_converted(cloud: Cloud, day: None) -> None:
    sessions = await _report(cloud, "tryon_sessions")
    converted = {(s["store_id"], s["epc"]): s["converted"] for s in sessions}
    assert converted[("A1", E1)] is True
    assert converted[("A1", E2)] is True
    assert converted[("A1", E7)] is True
    assert converted[("A1", E8)] is False
    assert converted[("A1", E5)] is False
    assert sum(converted.values()) == 4
    shoe = next(s for s in sessions if s["epc"] == E5)
    assert (shoe["sku"], shoe["gtin"]) == ("SHO", SHOE_GTIN)


async def test_a_longer_window_from_config_converts_the_late_sale(cloud: Cloud, day: None) -> None:
    report = await _report(cloud, extra="[tryons]\nconversion_window_minutes = 140\n")
    drs = next(r for r in report if r["sku"] == "DRS")
    assert (drs["tryons"], drs["converted"]) == (1, 1)
    # 139 minutes: one minute short of the 12:30 sale (the try-on ended at 10:10).
    report = await _report(cloud, extra="[tryons]\nconversion_window_minutes = 139\n")
    assert next(r for r in report if r["sku"] == "DRS")["converted"] == 0


async def test_the_window_edge_is_inclusive_to_the_millisecond(cloud: Cloud) -> None:
    a = Store(await cloud.enroll("A1"))
    end = at(D, 10, 0, ms=250)
    await a.send(
        a.tryon("EDGE", at(D, 9, 55), end, E1),
        a.sale(end + timedelta(minutes=120), {"sku": "EDGE", "qty": 1}),
        a.tryon("LATE", at(D, 9, 55), end, E2),
        a.sale(end + timedelta(minutes=120, milliseconds=1), {"sku": "LATE", "qty": 1}),
    )
    converted = {r["sku"]: r["converted"] for r in await _report(cloud)}
    assert converted == {"EDGE": 1, "LATE": 0}


async def test_report_parquet_types(cloud: Cloud, day: None) -> None:
    table = pq.read_table(io.BytesIO(await _export(cloud, "tryons", "parquet")))
    assert table.num_rows == 8
    assert table.column("day").to_pylist()[0] == date(2026, 11, 20)
    assert table.column("conversion").to_pylist()[-1] is None


def test_conversion_window_config_is_strict() -> None:
    base = cloud_toml(Path("/tmp/x"))
    with pytest.raises(ConfigError, match=r"tryons\.conversion_window: unknown key"):
        parse_config(base + "[tryons]\nconversion_window = 5\n")
    with pytest.raises(ConfigError, match=r"tryons\.conversion_window_minutes"):
        parse_config(base + "[tryons]\nconversion_window_minutes = 0\n")
    assert parse_config(base).tryons.conversion_window_minutes == 120


async def test_gtin_only_tryons_match_by_their_own_sku(cloud: Cloud) -> None:
    hq = await cloud.add_user("hq")
    for sku, gtin in (("SHO", SHOE_GTIN), ("BAG", "04012345000024")):
        async with cloud.session.put(
            cloud.base_url + f"/v1/catalogue/{sku}",
            headers={"Authorization": f"Bearer {hq}"},
            json={"gtin": gtin, "name": sku, "price": 1, "currency": "CNY", "category": "x"},
        ) as resp:
            assert resp.status in (200, 201)
    a = Store(await cloud.enroll("A1"))
    await a.send(
        a.tryon(None, at(D, 10, 0), at(D, 10, 5), E1, gtin=SHOE_GTIN),
        a.tryon(None, at(D, 12, 0), at(D, 12, 5), E2, gtin="04012345000024"),
        a.sale(at(D, 10, 30), {"sku": "SHO", "qty": 1}),
    )
    sessions = await _report(cloud, "tryon_sessions")
    assert [(s["sku"], s["converted"]) for s in sessions] == [("SHO", True), ("BAG", False)]
