"""Telemetry exports: wifi, footfall and tryons in CSV and NDJSON (Parquet smoke), hourly
roll-ups, from/to windows, region scoping over HTTP, and the CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from cloud import export
from cloud.config import CloudConfig
from tests.cloud.conftest import Cloud, cloud_toml, envelope, iso, sale_event, sqlite_only
from tests.cloud.test_telemetry_ingest import footfall_payload, tryon_payload, wifi_payload

H = datetime(2026, 11, 20, 9, tzinfo=UTC)
CLI = str(Path(sys.executable).with_name("storelink-cloud"))


def minute(n: int) -> str:
    return iso(H + timedelta(minutes=n))


@pytest.fixture
async def telemetry(cloud: Cloud) -> None:
    """East store E1: 3 Wi-Fi minutes over two hours, 3 footfall minutes, a try-on and its
    sale. West store W1: one footfall minute."""
    east = await cloud.enroll("E1", "east")
    west = await cloud.enroll("W1", "west")
    sale = sale_event("E1", 9)
    sale["payload"]["occurred_at"] = minute(20)
    sale["payload"]["lines"][1]["sku"] = "JKT"
    batch = [
        envelope("E1", 1, "wifi.window", wifi_payload(window_start=minute(0))),
        envelope(
            "E1",
            2,
            "wifi.window",
            wifi_payload(
                window_start=minute(1),
                devices=10,
                occupancy=2.5,
                dwell_hist=[1, 0, 0, 0, 0, 4],
                new_devices=2,
            ),
        ),
        envelope("E1", 3, "wifi.window", wifi_payload(window_start=minute(60), devices=3)),
        envelope("E1", 4, "footfall.window", footfall_payload(window_start=minute(0))),
        envelope(
            "E1",
            5,
            "footfall.window",
            footfall_payload(window_start=minute(1), occupancy=20, **{"in": 4, "out": 1}),
        ),
        envelope("E1", 6, "footfall.window", footfall_payload(window_start=minute(61))),
        envelope(
            "E1",
            7,
            "tryon",
            tryon_payload(sku="JKT", started_at=minute(5), ended_at=minute(10)),
        ),
        sale,
    ]
    assert len((await east.send_events(batch)).json()["stored"]) == len(batch)
    west_window = envelope("W1", 1, "footfall.window", footfall_payload(window_start=minute(0)))
    assert (await west.send_events([west_window])).json()["stored"] == [west_window["id"]]


async def _export(
    cloud: Cloud,
    dataset: str,
    fmt: str,
    window: export.Window | None = None,
    config: CloudConfig | None = None,
) -> bytes:
    chunks: list[bytes] = []

    async def write(data: bytes) -> None:
        chunks.append(data)

    found, encoder = export.resolve(dataset, fmt, config)
    await export.export(cloud.engine, found, encoder, window or export.Window(), write)
    return b"".join(chunks)


async def _ndjson(cloud: Cloud, dataset: str, window: export.Window | None = None) -> list[Any]:
    data = await _export(cloud, dataset, "ndjson", window)
    return [msgspec.json.decode(line) for line in data.splitlines()]


async def _csv(cloud: Cloud, dataset: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((await _export(cloud, dataset, "csv")).decode())))


async def test_wifi_minutes_in_ndjson_and_csv(cloud: Cloud, telemetry: None) -> None:
    rows = await _ndjson(cloud, "wifi")
    assert [(r["store_id"], r["window_start"]) for r in rows] == [
        ("E1", "2026-11-20T09:00:00.000Z"),
        ("E1", "2026-11-20T09:01:00.000Z"),
        ("E1", "2026-11-20T10:00:00.000Z"),
    ]
    assert rows[1] == {
        "store_id": "E1", "sniffer": "front", "window_start": "2026-11-20T09:01:00.000Z",
        "window_s": 60, "devices": 10, "visitors": 6, "passers_by": 8, "occupancy": 2.5,
        "dwell_hist": [1, 0, 0, 0, 0, 4], "new_devices": 2, "repeat_devices": None,
        "fixed_excluded": 2, "frames": 812, "malformed": 3,
    }  # fmt: skip
    table = await _csv(cloud, "wifi")
    assert len(table) == 3
    assert msgspec.json.decode(table[1]["dwell_hist"]) == [1, 0, 0, 0, 0, 4]
    assert (table[1]["new_devices"], table[1]["repeat_devices"]) == ("2", "")


async def test_wifi_hourly_sums_flows_and_averages_levels(cloud: Cloud, telemetry: None) -> None:
    rows = await _ndjson(cloud, "wifi_hourly")
    assert [r["hour"] for r in rows] == ["2026-11-20T09:00:00.000Z", "2026-11-20T10:00:00.000Z"]
    nine = rows[0]
    assert nine["minutes"] == 2
    assert (nine["avg_devices"], nine["max_devices"]) == (12.0, 14)
    assert (nine["avg_occupancy"], nine["max_occupancy"]) == (3.5, 4.5)
    assert nine["dwell_hist"] == [4, 1, 0, 2, 0, 5]
    assert (nine["new_devices"], nine["repeat_devices"], nine["frames"]) == (2, None, 1624)
    assert rows[1]["dwell_hist"] == [3, 1, 0, 2, 0, 1]
    # A window cutting the 09:00 hour after its first minute rolls up only the second.
    cut = await _ndjson(cloud, "wifi_hourly", export.make_window("2026-11-20T09:01:00Z", None))
    assert (cut[0]["minutes"], cut[0]["dwell_hist"]) == (1, [1, 0, 0, 0, 0, 4])


async def test_footfall_minutes_and_hours(cloud: Cloud, telemetry: None) -> None:
    rows = await _ndjson(cloud, "footfall")
    assert [(r["store_id"], r["window_start"], r["in"], r["out"]) for r in rows] == [
        ("E1", "2026-11-20T09:00:00.000Z", 5, 2),
        ("W1", "2026-11-20T09:00:00.000Z", 5, 2),
        ("E1", "2026-11-20T09:01:00.000Z", 4, 1),
        ("E1", "2026-11-20T10:01:00.000Z", 5, 2),
    ]
    table = await _csv(cloud, "footfall")
    assert list(table[0]) == [f.name for f in export.DATASETS["footfall"].fields]
    assert table[2]["occupancy"] == "20"
    hours = await _ndjson(cloud, "footfall_hourly")
    assert hours[0] == {
        "store_id": "E1", "camera": "entrance", "hour": "2026-11-20T09:00:00.000Z",
        "minutes": 2, "in": 9, "out": 3, "avg_occupancy": 18.5, "max_occupancy": 20,
    }  # fmt: skip
    assert len(hours) == 3


async def test_tryons_in_ndjson_and_csv(cloud: Cloud, telemetry: None) -> None:
    # The fixture's sale: a GTIN-only jacket line (no catalogue entry, so no SKU: left out)
    # and 2 x JKT, 10 minutes after the try-on of a JKT ended.
    assert await _ndjson(cloud, "tryons") == [
        {
            "day": "2026-11-20", "store_id": "E1", "sku": "JKT", "tryons": 1, "converted": 1,
            "purchases": 2, "conversion": 1.0,
        }
    ]  # fmt: skip
    table = await _csv(cloud, "tryons")
    assert table == [
        {
            "day": "2026-11-20", "store_id": "E1", "sku": "JKT", "tryons": "1",
            "converted": "1", "purchases": "2", "conversion": "1.0",
        }
    ]  # fmt: skip
    sessions = await _csv(cloud, "tryon_sessions")
    assert [(s["store_id"], s["sku"], s["converted"]) for s in sessions] == [("E1", "JKT", "True")]


@pytest.mark.parametrize(
    "dataset",
    ["wifi", "wifi_hourly", "footfall", "footfall_hourly", "tryons", "tryon_sessions"],
)
async def test_parquet_smoke(cloud: Cloud, telemetry: None, dataset: str) -> None:
    table = pq.read_table(io.BytesIO(await _export(cloud, dataset, "parquet")))
    expected = len(await _ndjson(cloud, dataset))
    assert table.num_rows == expected > 0
    assert table.column_names == [f.name for f in export.DATASETS[dataset].fields]


async def test_regional_users_see_their_region_only(cloud: Cloud, telemetry: None) -> None:
    hq = await cloud.add_user("hq")
    west = await cloud.add_user("regional", "west")
    for dataset, total in (("footfall", 4), ("footfall_hourly", 3), ("wifi", 3), ("tryons", 1)):
        everything = await cloud.get(f"/v1/exports/{dataset}?format=ndjson", token=hq)
        assert everything.status == 200
        assert len(everything.body.splitlines()) == total
        regional = await cloud.get(f"/v1/exports/{dataset}?format=csv", token=west)
        assert regional.status == 200
        stores = {r["store_id"] for r in csv.DictReader(io.StringIO(regional.text))}
        assert stores == ({"W1"} if dataset.startswith("footfall") else set())


async def test_cli_exports_tryons_with_the_configured_window(
    cloud: Cloud, telemetry: None, tmp_path: Path
) -> None:
    sqlite_only(cloud.config)
    config = tmp_path / "cloud.toml"
    toml = cloud_toml(cloud.config.server.data_dir, "[tryons]\nconversion_window_minutes = 5\n")
    await asyncio.to_thread(config.write_text, toml)
    out = tmp_path / "tryons.csv"
    done = await asyncio.to_thread(
        subprocess.run,
        [CLI, "export", "tryons", "--config", str(config), "--format", "csv", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(await asyncio.to_thread(out.read_text))))
    # The sale came 10 minutes after the try-on ended: a 5-minute window misses it.
    assert [(r["sku"], r["tryons"], r["converted"]) for r in rows] == [("JKT", "1", "0")]
