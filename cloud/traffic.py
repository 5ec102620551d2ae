"""Store traffic for export: Wi-Fi sniffer and entrance camera windows, per minute and per hour.

Per-minute datasets are the stored windows as the agent sent them. Hourly roll-ups group the
minute windows of each UTC hour per store and device: flows (camera ``in``/``out``, visits
ended by dwell bucket, new and repeat devices, frames) are **summed**; levels (devices present,
visitors, passers-by, occupancy) are **averaged** over the minutes present, with the maximum
beside where a peak matters; ``minutes`` says how many windows the hour had (a gap in the data
shows as fewer than 60). The export's from/to select minute windows, so an hour cut by them
rolls up only its minutes inside.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Float, Row, Select, cast, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud import db
from cloud.schema import footfall_windows, wifi_windows
from cloud.sqltime import utc_hour
from cloud.telemetry import DWELL_BUCKETS

Condition = Callable[[Any], ColumnElement[bool]]
Record = dict[str, Any]

HOUR = timedelta(hours=1)

_WIFI_COLUMNS = (
    wifi_windows.c.store_id,
    wifi_windows.c.sniffer,
    wifi_windows.c.window_start,
    wifi_windows.c.window_s,
    wifi_windows.c.devices,
    wifi_windows.c.visitors,
    wifi_windows.c.passers_by,
    wifi_windows.c.occupancy,
    wifi_windows.c.dwell_hist,
    wifi_windows.c.new_devices,
    wifi_windows.c.repeat_devices,
    wifi_windows.c.fixed_excluded,
    wifi_windows.c.frames,
    wifi_windows.c.malformed,
)


def _avg(column: Any) -> Any:
    # PostgreSQL's avg of integers is numeric (Decimal in Python): make it a float everywhere.
    return cast(func.avg(column), Float)


def wifi_query(in_window: Condition, scoped: Condition) -> Select[Any]:
    """Wi-Fi windows, minute by minute."""
    return (
        select(*_WIFI_COLUMNS)
        .where(in_window(wifi_windows.c.window_start), scoped(wifi_windows.c.store_id))
        .order_by(wifi_windows.c.window_start, wifi_windows.c.store_id, wifi_windows.c.sniffer)
    )


async def wifi_records(_conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Record]:
    """Minute windows with the dwell histogram as a list."""
    return [{**row._mapping, "dwell_hist": msgspec.json.decode(row.dwell_hist)} for row in rows]


def wifi_hourly_query(in_window: Condition, scoped: Condition) -> Select[Any]:
    """Wi-Fi windows rolled up per store, sniffer and UTC hour (dwell added per chunk)."""
    hour = utc_hour(wifi_windows.c.window_start).label("hour")
    return (
        select(
            wifi_windows.c.store_id,
            wifi_windows.c.sniffer,
            hour,
            func.count().label("minutes"),
            # Bounds of the hour's minutes inside the export window, for the dwell step.
            func.min(wifi_windows.c.window_start).label("first_minute"),
            func.max(wifi_windows.c.window_start).label("last_minute"),
            _avg(wifi_windows.c.devices).label("avg_devices"),
            func.max(wifi_windows.c.devices).label("max_devices"),
            _avg(wifi_windows.c.visitors).label("avg_visitors"),
            _avg(wifi_windows.c.passers_by).label("avg_passers_by"),
            _avg(wifi_windows.c.occupancy).label("avg_occupancy"),
            func.max(wifi_windows.c.occupancy).label("max_occupancy"),
            func.sum(wifi_windows.c.new_devices).label("new_devices"),
            func.sum(wifi_windows.c.repeat_devices).label("repeat_devices"),
            func.max(wifi_windows.c.fixed_excluded).label("max_fixed_excluded"),
            func.sum(wifi_windows.c.frames).label("frames"),
            func.sum(wifi_windows.c.malformed).label("malformed"),
        )
        .where(in_window(wifi_windows.c.window_start), scoped(wifi_windows.c.store_id))
        .group_by(wifi_windows.c.store_id, wifi_windows.c.sniffer, hour)
        .order_by(hour, wifi_windows.c.store_id, wifi_windows.c.sniffer)
    )


def _hour_start(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _hour_of(moment: datetime) -> datetime:
    return db.utc(moment).replace(minute=0, second=0, microsecond=0)


def hourly_records(rows: Sequence[Row[Any]]) -> list[Record]:
    """Hour rows as records: the hour as an aware UTC time."""
    return [{**row._mapping, "hour": _hour_start(row.hour)} for row in rows]


async def wifi_hourly_records(conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Record]:
    """Hour rows plus the sum of their minutes' dwell histograms.

    JSON text cannot be summed in portable SQL, so the chunk's minute windows are read once
    more (a range of hours for the chunk's stores and sniffers) and added up here; the chunk
    runs in the export's read transaction, so it sees the same rows as the roll-up. Each hour
    takes only minutes between its first and last minute inside the export window: the window
    is one interval, so those are exactly the minutes the roll-up counted.
    """
    records = hourly_records(rows)
    if not records:
        return records
    hists = {(r["store_id"], r["sniffer"], r["hour"]): [0] * DWELL_BUCKETS for r in records}
    bounds = {
        (r["store_id"], r["sniffer"], r["hour"]): (
            db.utc(r.pop("first_minute")),
            db.utc(r.pop("last_minute")),
        )
        for r in records
    }
    devices = list({(r["store_id"], r["sniffer"]) for r in records})
    first = min(r["hour"] for r in records)
    last = max(r["hour"] for r in records) + HOUR
    minutes = await conn.execute(
        select(
            wifi_windows.c.store_id,
            wifi_windows.c.sniffer,
            wifi_windows.c.window_start,
            wifi_windows.c.dwell_hist,
        ).where(
            tuple_(wifi_windows.c.store_id, wifi_windows.c.sniffer).in_(devices),
            wifi_windows.c.window_start >= first,
            wifi_windows.c.window_start < last,
        )
    )
    for store_id, sniffer, start, text in minutes:
        key = (store_id, sniffer, _hour_of(start))
        # Not in hists: a minute of an hour outside this chunk (another sniffer's hours).
        if key in hists and bounds[key][0] <= db.utc(start) <= bounds[key][1]:
            for n, count in enumerate(msgspec.json.decode(text)):
                hists[key][n] += count
    return [r | {"dwell_hist": hists[(r["store_id"], r["sniffer"], r["hour"])]} for r in records]


def footfall_query(in_window: Condition, scoped: Condition) -> Select[Any]:
    """Footfall windows, minute by minute."""
    return (
        select(
            footfall_windows.c.store_id,
            footfall_windows.c.camera,
            footfall_windows.c.window_start,
            footfall_windows.c.window_s,
            footfall_windows.c["in"],
            footfall_windows.c.out,
            footfall_windows.c.occupancy,
        )
        .where(in_window(footfall_windows.c.window_start), scoped(footfall_windows.c.store_id))
        .order_by(
            footfall_windows.c.window_start, footfall_windows.c.store_id, footfall_windows.c.camera
        )
    )


def footfall_hourly_query(in_window: Condition, scoped: Condition) -> Select[Any]:
    """Footfall rolled up per store, camera and UTC hour."""
    hour = utc_hour(footfall_windows.c.window_start).label("hour")
    return (
        select(
            footfall_windows.c.store_id,
            footfall_windows.c.camera,
            hour,
            func.count().label("minutes"),
            func.sum(footfall_windows.c["in"]).label("in"),
            func.sum(footfall_windows.c.out).label("out"),
            _avg(footfall_windows.c.occupancy).label("avg_occupancy"),
            func.max(footfall_windows.c.occupancy).label("max_occupancy"),
        )
        .where(in_window(footfall_windows.c.window_start), scoped(footfall_windows.c.store_id))
        .group_by(footfall_windows.c.store_id, footfall_windows.c.camera, hour)
        .order_by(hour, footfall_windows.c.store_id, footfall_windows.c.camera)
    )


async def footfall_hourly_records(_conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Record]:
    """Hour rows as records."""
    return hourly_records(rows)
