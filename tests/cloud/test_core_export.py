"""HQ export: NDJSON, CSV and Parquet content, time windows, HTTP streaming and scoping."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest

from cloud import export
from cloud.export import ExportError, make_window
from tests.cloud.conftest import Cloud, StoreClient, iso, sale_event

DAY = datetime(2026, 11, 20, tzinfo=UTC)


def _on_day(store: str, seq: int, day: int) -> dict[str, Any]:
    event = sale_event(store, seq)
    event["payload"]["occurred_at"] = iso(DAY + timedelta(days=day, hours=10))
    return event


@pytest.fixture
async def stores(cloud: Cloud) -> tuple[StoreClient, StoreClient]:
    east = await cloud.enroll("E1", "east")
    west = await cloud.enroll("W1", "west")
    await east.send_events([_on_day("E1", i, i) for i in range(1, 4)])
    await west.send_events([_on_day("W1", 1, 1)])
    return east, west


async def _export(
    cloud: Cloud, dataset: str, fmt: str, window: export.Window | None = None
) -> bytes:
    chunks: list[bytes] = []

    async def write(data: bytes) -> None:
        chunks.append(data)

    found, encoder = export.resolve(dataset, fmt)
    await export.export(cloud.engine, found, encoder, window or export.Window(), write)
    return b"".join(chunks)


async def test_ndjson_sales_with_nested_lines(cloud: Cloud, stores: Any) -> None:
    rows = [
        msgspec.json.decode(line) for line in (await _export(cloud, "sales", "ndjson")).splitlines()
    ]
    assert [(r["store_id"], r["receipt_no"]) for r in rows] == [
        ("E1", "E1-000001"),
        ("W1", "W1-000001"),
        ("E1", "E1-000002"),
        ("E1", "E1-000003"),
    ]
    first = rows[0]
    assert set(first) == {
        "store_id", "sale_id", "receipt_no", "occurred_at", "register_id", "staff_id",
        "member_id", "total", "currency", "lines",
    }  # fmt: skip
    assert first["occurred_at"] == "2026-11-21T10:00:00.000Z"
    assert first["total"] == 68900
    assert [line["name"] for line in first["lines"]] == ["Trail jacket 冲锋衣", "Merino <socks>"]
    assert first["lines"][1] == {
        "line_no": 1, "gtin": None, "sku": "SOCK-M", "epc": None, "name": "Merino <socks>",
        "qty": 2, "unit_price": 5000, "discount": 1000,
    }  # fmt: skip


async def test_csv_has_a_header_and_lines_as_json(cloud: Cloud, stores: Any) -> None:
    text = (await _export(cloud, "sales", "csv")).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 4
    assert rows[0]["member_id"] == ""
    assert msgspec.json.decode(rows[0]["lines"])[0]["qty"] == 1
    empty = (await _export(cloud, "sales", "csv", make_window("2030-01-01", None))).decode()
    assert empty.splitlines() == [",".join(f.name for f in export.DATASETS["sales"].fields)]


async def test_parquet_round_trips(
    cloud: Cloud, stores: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "ROW_GROUP_ROWS", 2)
    monkeypatch.setattr(export, "CHUNK_ROWS", 1)
    data = await _export(cloud, "sales", "parquet")
    table = pq.read_table(io.BytesIO(data))
    assert table.num_rows == 4
    assert pq.ParquetFile(io.BytesIO(data)).metadata.num_row_groups == 2
    # Converting to Python reads the time zone database: file I/O, so not on the loop.
    first = (await asyncio.to_thread(table.to_pylist))[0]
    assert first["occurred_at"] == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert first["lines"][0]["gtin"] == "06901234567892"
    lines = pq.read_table(io.BytesIO(await _export(cloud, "sale_lines", "parquet")))
    assert lines.num_rows == 8


async def test_from_and_to_filter_on_occurred_at(cloud: Cloud, stores: Any) -> None:
    window = make_window("2026-11-22", "2026-11-23T10:00:00Z")
    rows = [
        msgspec.json.decode(x)
        for x in (await _export(cloud, "sales", "ndjson", window)).splitlines()
    ]
    assert [r["receipt_no"] for r in rows] == ["E1-000002"]
    lines = (await _export(cloud, "sale_lines", "ndjson", window)).splitlines()
    assert len(lines) == 2


def test_bad_windows_and_names() -> None:
    with pytest.raises(ExportError, match="from must be earlier"):
        make_window("2026-11-23", "2026-11-22")
    with pytest.raises(ExportError, match="from: not an ISO 8601"):
        make_window("yesterday", None)
    with pytest.raises(ExportError, match="unknown dataset"):
        export.resolve("nope", "csv")
    with pytest.raises(ExportError, match="unknown format"):
        export.resolve("sales", "xlsx")


async def test_http_export_is_streamed_and_scoped(cloud: Cloud, stores: Any) -> None:
    hq = await cloud.add_user("hq")
    east = await cloud.add_user("regional", "east")
    async with cloud.session.get(
        cloud.base_url + "/v1/exports/sales?format=ndjson",
        headers={"Authorization": f"Bearer {hq}"},
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        body = await resp.read()
    assert len(body.splitlines()) == 4
    regional = await cloud.get("/v1/exports/sales?format=ndjson", token=east)
    assert {msgspec.json.decode(x)["store_id"] for x in regional.body.splitlines()} == {"E1"}
    parquet = await cloud.get("/v1/exports/sale_lines?format=parquet&from=2026-11-22", token=hq)
    assert pq.read_table(io.BytesIO(parquet.body)).num_rows == 4
    assert (await cloud.get("/v1/exports/sales?format=ndjson")).status == 401
    bad = await cloud.get("/v1/exports/sales?format=xml", token=hq)
    assert bad.status == 400
    assert bad.json()["error"] == "bad_export"


async def test_export_to_a_file(cloud: Cloud, stores: Any, tmp_path: Path) -> None:
    out = tmp_path / "sales.csv"
    count = await export.export_to_file(cloud.engine, "sales", "csv", export.Window(), str(out))
    assert count == 4
    text = await asyncio.to_thread(out.read_text)
    assert len(text.splitlines()) == 5
