"""HQ export: a dataset streamed out of the database as NDJSON, CSV or Parquet.

Rows are read through a server-side cursor in chunks of :data:`CHUNK_ROWS`, turned into
records, encoded and handed to a writer (a file, stdout, an HTTP response) chunk by chunk:
neither the result nor the output is ever held whole. Parquet is no exception: its writer
emits each row group as soon as it is complete, and the footer at the end.

Datasets live in :data:`DATASETS`; a new one is one more :class:`Dataset` entry: its columns,
its query, and optionally how to complete a chunk of rows (``sales`` fetches the lines of each
chunk of sales) and how the cloud's config shapes it (``tryons`` takes its conversion window
from ``[tryons]``). ``--from``/``--to`` filter on the dataset's time column (UTC): from
inclusive, to exclusive. Besides sales: ``tryons`` (conversion per store, SKU and day, see
:mod:`cloud.tryons`) and ``tryon_sessions``; ``wifi``, ``wifi_hourly``, ``footfall`` and
``footfall_hourly`` (:mod:`cloud.traffic`).

Exceptions::

    Exception
     └── ExportError   unknown dataset or format, bad time window
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, BinaryIO, Protocol

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
from aiohttp import web
from sqlalchemy import ColumnElement, Row, Select, and_, func, select, true, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tqdm import tqdm

from cloud import appkeys, auth, db, traffic, tryons
from cloud.config import CloudConfig, TryonsConfig
from cloud.schema import sale_lines, sales, stores

CHUNK_ROWS = 2000
ROW_GROUP_ROWS = 50_000

Record = dict[str, Any]
Write = Callable[[bytes], Awaitable[None]]


class ExportError(Exception):
    """The export cannot run as asked."""


@dataclass(frozen=True, slots=True)
class Window:
    """A time window, each end optional: ``start <= t < end``."""

    start: datetime | None = None
    end: datetime | None = None


def parse_time(text: str, name: str) -> datetime:
    """An ISO 8601 date or time as aware UTC (a date means its midnight, UTC)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        return db.utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError as err:
        raise ExportError(f"{name}: not an ISO 8601 date or time: {text!r}") from err


def make_window(start: str | None, end: str | None) -> Window:
    """The window from optional ``from``/``to`` texts."""
    window = Window(
        None if start is None else parse_time(start, "from"),
        None if end is None else parse_time(end, "to"),
    )
    if window.start and window.end and window.start >= window.end:
        raise ExportError("from must be earlier than to")
    return window


@dataclass(frozen=True, slots=True)
class Field:
    """An output column: its name and Parquet type (timestamps become RFC 3339 in text)."""

    name: str
    type: Any  # pyarrow.DataType

    @property
    def is_time(self) -> bool:
        """Whether the column holds times."""
        return bool(pa.types.is_timestamp(self.type))

    @property
    def is_nested(self) -> bool:
        """Whether the column holds a list (JSON text in CSV)."""
        return bool(pa.types.is_list(self.type))


Complete = Callable[[AsyncConnection, Sequence[Row[Any]]], Awaitable[list[Record]]]


@dataclass(frozen=True)
class Dataset:
    """An exportable dataset: columns, an ordered query, how to make records of a chunk."""

    name: str
    fields: tuple[Field, ...]
    query: Callable[[Window, ColumnElement[bool] | None], Select[Any]]
    complete: Complete | None = None
    # The dataset as the cloud's config shapes it, when it depends on config.
    configure: Callable[[CloudConfig], Dataset] | None = None

    async def records(self, conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Record]:
        """The output records of a chunk of query rows."""
        if self.complete is not None:
            return await self.complete(conn, rows)
        return [dict(row._mapping) for row in rows]


def _in_window(column: Any, window: Window) -> ColumnElement[bool]:
    conditions = []
    if window.start is not None:
        conditions.append(column >= window.start)
    if window.end is not None:
        conditions.append(column < window.end)
    return and_(true(), *conditions)


def _scoped(store_column: Any, scope: ColumnElement[bool] | None) -> ColumnElement[bool]:
    if scope is None:
        return true()
    return store_column.in_(select(stores.c.id).where(scope))  # type: ignore[no-any-return]


_LINE = pa.struct(
    [
        ("line_no", pa.int32()),
        ("gtin", pa.string()),
        ("sku", pa.string()),
        ("epc", pa.string()),
        ("name", pa.string()),
        ("qty", pa.int32()),
        ("unit_price", pa.int64()),
        ("discount", pa.int64()),
    ]
)
_TIME = pa.timestamp("ms", tz="UTC")
_LINE_COLUMNS = (
    sale_lines.c.line_no,
    sale_lines.c.gtin,
    sale_lines.c.sku,
    sale_lines.c.epc,
    sale_lines.c.name,
    sale_lines.c.qty,
    sale_lines.c.unit_price,
    sale_lines.c.discount,
)


def _sales_query(window: Window, scope: ColumnElement[bool] | None) -> Select[Any]:
    return (
        select(
            sales.c.store_id,
            sales.c.sale_id,
            sales.c.receipt_no,
            sales.c.occurred_at,
            sales.c.register_id,
            sales.c.staff_id,
            sales.c.member_id,
            sales.c.total,
            sales.c.currency,
        )
        .where(_in_window(sales.c.occurred_at, window), _scoped(sales.c.store_id, scope))
        .order_by(sales.c.occurred_at, sales.c.store_id, sales.c.sale_id)
    )


async def _sales_with_lines(conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Record]:
    keys = [(row.store_id, row.sale_id) for row in rows]
    lines: dict[tuple[str, str], list[Record]] = {key: [] for key in keys}
    result = await conn.execute(
        select(sale_lines.c.store_id, sale_lines.c.sale_id, *_LINE_COLUMNS)
        .where(tuple_(sale_lines.c.store_id, sale_lines.c.sale_id).in_(keys))
        .order_by(sale_lines.c.store_id, sale_lines.c.sale_id, sale_lines.c.line_no)
    )
    for line in result:
        values = line._mapping
        lines[(line.store_id, line.sale_id)].append({c.key: values[c.key] for c in _LINE_COLUMNS})
    return [{**row._mapping, "lines": lines[(row.store_id, row.sale_id)]} for row in rows]


def _sale_lines_query(window: Window, scope: ColumnElement[bool] | None) -> Select[Any]:
    return (
        select(sales.c.store_id, sales.c.sale_id, sales.c.occurred_at, *_LINE_COLUMNS)
        .join(
            sale_lines,
            and_(
                sale_lines.c.store_id == sales.c.store_id, sale_lines.c.sale_id == sales.c.sale_id
            ),
        )
        .where(_in_window(sales.c.occurred_at, window), _scoped(sales.c.store_id, scope))
        .order_by(sales.c.occurred_at, sales.c.store_id, sales.c.sale_id, sale_lines.c.line_no)
    )


def _conditions(
    window: Window, scope: ColumnElement[bool] | None
) -> tuple[tryons.Condition, tryons.Condition]:
    """The time window and the store scope as conditions on a given column."""
    return (lambda column: _in_window(column, window)), (lambda column: _scoped(column, scope))


def _tryons_report(config: TryonsConfig) -> Dataset:
    minutes = config.conversion_window_minutes
    return Dataset(
        "tryons",
        (
            Field("day", pa.date32()),
            Field("store_id", pa.string()),
            Field("sku", pa.string()),
            Field("tryons", pa.int64()),
            Field("converted", pa.int64()),
            Field("purchases", pa.int64()),
            Field("conversion", pa.float64()),
        ),
        lambda window, scope: tryons.report_query(*_conditions(window, scope), minutes),
        tryons.report_records,
        lambda cloud: _tryons_report(cloud.tryons),
    )


def _tryon_sessions(config: TryonsConfig) -> Dataset:
    minutes = config.conversion_window_minutes
    return Dataset(
        "tryon_sessions",
        (
            Field("store_id", pa.string()),
            Field("session_id", pa.string()),
            Field("reader", pa.string()),
            Field("room", pa.string()),
            Field("epc", pa.string()),
            Field("gtin", pa.string()),
            Field("sku", pa.string()),
            Field("started_at", _TIME),
            Field("ended_at", _TIME),
            Field("dwell_s", pa.float64()),
            Field("closed_by", pa.string()),
            Field("converted", pa.bool_()),
        ),
        lambda window, scope: tryons.sessions_query(*_conditions(window, scope), minutes),
        configure=lambda cloud: _tryon_sessions(cloud.tryons),
    )


_COUNT = pa.int64()
_WIFI_FIELDS = (
    Field("store_id", pa.string()),
    Field("sniffer", pa.string()),
    Field("window_start", _TIME),
    Field("window_s", _COUNT),
    Field("devices", _COUNT),
    Field("visitors", _COUNT),
    Field("passers_by", _COUNT),
    Field("occupancy", pa.float64()),
    Field("dwell_hist", pa.list_(_COUNT)),
    Field("new_devices", _COUNT),
    Field("repeat_devices", _COUNT),
    Field("fixed_excluded", _COUNT),
    Field("frames", _COUNT),
    Field("malformed", _COUNT),
)
_WIFI_HOURLY_FIELDS = (
    Field("store_id", pa.string()),
    Field("sniffer", pa.string()),
    Field("hour", _TIME),
    Field("minutes", _COUNT),
    Field("avg_devices", pa.float64()),
    Field("max_devices", _COUNT),
    Field("avg_visitors", pa.float64()),
    Field("avg_passers_by", pa.float64()),
    Field("avg_occupancy", pa.float64()),
    Field("max_occupancy", pa.float64()),
    Field("dwell_hist", pa.list_(_COUNT)),
    Field("new_devices", _COUNT),
    Field("repeat_devices", _COUNT),
    Field("max_fixed_excluded", _COUNT),
    Field("frames", _COUNT),
    Field("malformed", _COUNT),
)
_FOOTFALL_FIELDS = (
    Field("store_id", pa.string()),
    Field("camera", pa.string()),
    Field("window_start", _TIME),
    Field("window_s", _COUNT),
    Field("in", _COUNT),
    Field("out", _COUNT),
    Field("occupancy", _COUNT),
)
_FOOTFALL_HOURLY_FIELDS = (
    Field("store_id", pa.string()),
    Field("camera", pa.string()),
    Field("hour", _TIME),
    Field("minutes", _COUNT),
    Field("in", _COUNT),
    Field("out", _COUNT),
    Field("avg_occupancy", pa.float64()),
    Field("max_occupancy", _COUNT),
)

DATASETS: dict[str, Dataset] = {
    "sales": Dataset(
        "sales",
        (
            Field("store_id", pa.string()),
            Field("sale_id", pa.string()),
            Field("receipt_no", pa.string()),
            Field("occurred_at", _TIME),
            Field("register_id", pa.string()),
            Field("staff_id", pa.string()),
            Field("member_id", pa.string()),
            Field("total", pa.int64()),
            Field("currency", pa.string()),
            Field("lines", pa.list_(_LINE)),
        ),
        _sales_query,
        _sales_with_lines,
    ),
    "sale_lines": Dataset(
        "sale_lines",
        (
            Field("store_id", pa.string()),
            Field("sale_id", pa.string()),
            Field("occurred_at", _TIME),
            *(Field(f.name, f.type) for f in _LINE),
        ),
        _sale_lines_query,
    ),
    "tryons": _tryons_report(TryonsConfig()),
    "tryon_sessions": _tryon_sessions(TryonsConfig()),
    "wifi": Dataset(
        "wifi",
        _WIFI_FIELDS,
        lambda window, scope: traffic.wifi_query(*_conditions(window, scope)),
        traffic.wifi_records,
    ),
    "wifi_hourly": Dataset(
        "wifi_hourly",
        _WIFI_HOURLY_FIELDS,
        lambda window, scope: traffic.wifi_hourly_query(*_conditions(window, scope)),
        traffic.wifi_hourly_records,
    ),
    "footfall": Dataset(
        "footfall",
        _FOOTFALL_FIELDS,
        lambda window, scope: traffic.footfall_query(*_conditions(window, scope)),
    ),
    "footfall_hourly": Dataset(
        "footfall_hourly",
        _FOOTFALL_HOURLY_FIELDS,
        lambda window, scope: traffic.footfall_hourly_query(*_conditions(window, scope)),
        traffic.footfall_hourly_records,
    ),
}


# -- encoders: records in, bytes out -------------------------------------------------------


class Encoder(Protocol):
    """Turns chunks of records into output bytes."""

    content_type: str
    extension: str

    def encode(self, records: list[Record]) -> bytes:
        """Bytes for these records (possibly empty while buffering)."""
        ...

    def finish(self) -> bytes:
        """The remaining bytes after the last chunk."""
        ...


def _text_value(field: Field, value: Any) -> Any:
    if value is None:
        return None
    if field.is_time:
        return db.rfc3339(value)
    return value


class NdjsonEncoder:
    """One JSON object per line; lines nested as a list of objects."""

    content_type = "application/x-ndjson"
    extension = "ndjson"

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields = fields

    def encode(self, records: list[Record]) -> bytes:
        """One line per record."""
        out = bytearray()
        for record in records:
            out += msgspec.json.encode(
                {f.name: _text_value(f, record[f.name]) for f in self.fields}
            )
            out += b"\n"
        return bytes(out)

    def finish(self) -> bytes:
        """Nothing follows the last line."""
        return b""


class CsvEncoder:
    """A header row, then one row per record; nested columns as JSON text."""

    content_type = "text/csv"
    extension = "csv"

    def __init__(self, fields: Sequence[Field]) -> None:
        self.fields = fields
        self.header_done = False

    def encode(self, records: list[Record]) -> bytes:
        """CSV rows (with the header before the first)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if not self.header_done:
            writer.writerow([f.name for f in self.fields])
            self.header_done = True
        for record in records:
            row = []
            for f in self.fields:
                value = _text_value(f, record[f.name])
                if f.is_nested and value is not None:
                    value = msgspec.json.encode(value).decode("utf-8")
                row.append("" if value is None else value)
            writer.writerow(row)
        return buffer.getvalue().encode("utf-8")

    def finish(self) -> bytes:
        """The header alone when there were no rows."""
        return b"" if self.header_done else self.encode([])


class _Collector:
    """A write-only file for ParquetWriter that hands back what was written so far."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


class ParquetEncoder:
    """Row groups of up to ROW_GROUP_ROWS records, each emitted as soon as it is full."""

    content_type = "application/vnd.apache.parquet"
    extension = "parquet"

    def __init__(self, fields: Sequence[Field]) -> None:
        self.schema = pa.schema([(f.name, f.type) for f in fields])
        self.sink = _Collector()
        self.writer = pq.ParquetWriter(self.sink, self.schema, compression="zstd")
        self.pending: list[Record] = []

    def _flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.Table.from_pylist(self.pending, schema=self.schema))
            self.pending = []

    def encode(self, records: list[Record]) -> bytes:
        """Buffer records; bytes of a row group once one is full."""
        self.pending.extend(records)
        if len(self.pending) >= ROW_GROUP_ROWS:
            self._flush()
        return self.sink.take()

    def finish(self) -> bytes:
        """The last row group and the footer."""
        self._flush()
        self.writer.close()
        return self.sink.take()


ENCODERS: dict[str, Callable[[Sequence[Field]], Encoder]] = {
    "ndjson": NdjsonEncoder,
    "csv": CsvEncoder,
    "parquet": ParquetEncoder,
}


def resolve(dataset: str, fmt: str, config: CloudConfig | None = None) -> tuple[Dataset, Encoder]:
    """The dataset (shaped by config, if given) and a fresh encoder; ExportError naming what
    is unknown."""
    if dataset not in DATASETS:
        raise ExportError(f"unknown dataset {dataset!r} (known: {', '.join(sorted(DATASETS))})")
    if fmt not in ENCODERS:
        raise ExportError(f"unknown format {fmt!r} (known: {', '.join(ENCODERS)})")
    found = DATASETS[dataset]
    if config is not None and found.configure is not None:
        found = found.configure(config)
    return found, ENCODERS[fmt](found.fields)


async def count_rows(engine: AsyncEngine, dataset: Dataset, window: Window) -> int:
    """How many rows the export will have (for a progress bar)."""
    query = dataset.query(window, None)
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(query.subquery())) or 0)


async def export(
    engine: AsyncEngine,
    dataset: Dataset,
    encoder: Encoder,
    window: Window,
    write: Write,
    *,
    scope: ColumnElement[bool] | None = None,
    progress: Callable[[int], object] | None = None,
) -> int:
    """Stream the dataset through the encoder to write; return the number of records."""
    query = dataset.query(window, scope)
    total = 0
    # One read transaction: the chunk queries (lines of a chunk of sales) see the same
    # snapshot as the cursor, so a sale arriving meanwhile cannot appear half.
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=CHUNK_ROWS))
        async for rows in result.partitions(CHUNK_ROWS):
            records = await dataset.records(conn, rows)
            data = await asyncio.to_thread(encoder.encode, records)
            if data:
                await write(data)
            total += len(records)
            if progress is not None:
                progress(len(records))
    tail = await asyncio.to_thread(encoder.finish)
    if tail:
        await write(tail)
    return total


async def export_to_file(
    engine: AsyncEngine,
    dataset: str,
    fmt: str,
    window: Window,
    out: str,
    config: CloudConfig | None = None,
) -> int:
    """The CLI's export: to a file, or to stdout for ``-``; a progress bar on a terminal."""
    found, encoder = resolve(dataset, fmt, config)
    show = sys.stderr.isatty()
    total = await count_rows(engine, found, window) if show else None
    bar = tqdm(total=total, unit="rows", file=sys.stderr, disable=not show)
    target: BinaryIO = sys.stdout.buffer if out == "-" else await asyncio.to_thread(open, out, "wb")
    try:

        async def write(data: bytes) -> None:
            await asyncio.to_thread(target.write, data)

        count = await export(engine, found, encoder, window, write, progress=bar.update)
        await asyncio.to_thread(target.flush)
    finally:
        bar.close()
        if out != "-":
            await asyncio.to_thread(target.close)
    return count


async def _get_export(request: web.Request) -> web.StreamResponse:
    """``GET /v1/exports/{dataset}?format=&from=&to=``: HQ all stores, regional its region."""
    user = await auth.require_user(request)
    try:
        found, encoder = resolve(
            request.match_info["dataset"],
            request.query.get("format", "ndjson"),
            request.app[appkeys.CONFIG],
        )
        window = make_window(request.query.get("from"), request.query.get("to"))
    except ExportError as err:
        raise auth.json_error(400, "bad_export", str(err)) from err
    response = web.StreamResponse(
        headers={
            "Content-Type": encoder.content_type,
            "Content-Disposition": f'attachment; filename="{found.name}.{encoder.extension}"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    await export(
        request.app[appkeys.ENGINE],
        found,
        encoder,
        window,
        response.write,
        scope=auth.visible_stores(user),
    )
    await response.write_eof()
    return response


def setup_routes(app: web.Application) -> None:
    """Register GET /v1/exports/{dataset}."""
    app.router.add_get("/v1/exports/{dataset}", _get_export)
