"""What head office defines for every store: catalogue, staff, segments and offers.

Each ``PUT`` creates or replaces one record and records a change, so stores pull it (staff
only to their own store). An unchanged ``PUT`` writes nothing. :func:`import_ndjson` loads
the same records in bulk (the demo and the ``storelink-cloud import`` command), one JSON
object per line, all or nothing within the caller's transaction.

Offers carry the rule that a high-value member never sees a clearance offer into the data:
a clearance offer may not target a high-value segment, and a segment targeted by an active
clearance offer may not become high-value. Offers for everyone (``segments: []``) are the
store's to filter: it skips clearance offers for members in any high-value segment.

Segment memberships follow a changed rule at the next recompute (hourly, or
``POST /v1/segments/recompute``).

Exceptions::

    ValueError
     ├── InvalidField   (cloud.webjson) a field refers to nothing or breaks a rule
     └── ImportFailed   an NDJSON line is not JSON or not a valid record; names line and field
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from sqlalchemy import Table, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud import appkeys, auth, db
from cloud.changes import record_change
from cloud.fieldcrypt import FieldCrypt
from cloud.members import MemberIn, put_member
from cloud.schema import catalogue, offers, segments, staff, stores
from cloud.segments import SegmentIn
from cloud.webjson import (
    ID_PATTERN,
    InvalidField,
    check_id,
    invalid_field,
    problems,
    read_model,
    require_hq,
)

ENTITIES = ("catalogue", "staff", "segments", "offers", "members")

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]


class ImportFailed(ValueError):
    """An NDJSON import line is invalid; nothing of the import should be committed."""


class Written(Enum):
    """What a PUT did."""

    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class CatalogueIn(_In):
    """PUT /v1/catalogue/{sku} body."""

    gtin: str | None = Field(default=None, pattern=r"^[0-9]{8,14}$")
    name: str = Field(min_length=1, max_length=200)
    price: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    category: str = Field(min_length=1, max_length=100)


class StaffIn(_In):
    """PUT /v1/stores/{store_id}/staff/{staff_id} body."""

    name: str = Field(min_length=1, max_length=200)
    active: bool = True


class OfferIn(_In):
    """PUT /v1/offers/{id} body; ``segments: []`` targets every member."""

    text: str = Field(min_length=1, max_length=300)
    segments: list[EntityId] = Field(default_factory=list, max_length=100)
    clearance: bool
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    active: bool = True


async def _write(
    conn: AsyncConnection,
    table: Table,
    key: Mapping[str, Any],
    values: Mapping[str, Any],
    now: datetime,
) -> Written:
    """Insert or update the row at key; compare first so that an identical PUT writes nothing."""
    where = [table.c[k] == v for k, v in key.items()]
    old = (await conn.execute(select(table).where(*where))).first()
    if old is None:
        await conn.execute(insert(table).values(**key, **values, updated_at=db.utc(now)))
        return Written.CREATED
    if all(getattr(old, k) == v for k, v in values.items()):
        return Written.UNCHANGED
    await conn.execute(update(table).where(*where).values(**values, updated_at=db.utc(now)))
    return Written.UPDATED


async def put_catalogue(
    conn: AsyncConnection, sku: str, body: CatalogueIn, now: datetime
) -> Written:
    """Create or replace a catalogue item."""
    check_id("sku", sku)
    written = await _write(conn, catalogue, {"sku": sku}, body.model_dump(), now)
    if written is not Written.UNCHANGED:
        await record_change(conn, "catalogue", sku, "upsert")
    return written


async def put_staff(
    conn: AsyncConnection, store_id: str, staff_id: str, body: StaffIn, now: datetime
) -> Written:
    """Create or replace a staff member (associate) of a store."""
    check_id("staff_id", staff_id, 32)
    if await conn.scalar(select(stores.c.id).where(stores.c.id == store_id)) is None:
        raise InvalidField("store_id", f"no store {store_id!r}")
    written = await _write(
        conn, staff, {"store_id": store_id, "staff_id": staff_id}, body.model_dump(), now
    )
    if written is not Written.UNCHANGED:
        await record_change(conn, "staff", staff_id, "upsert", store_id)
    return written


async def put_segment(
    conn: AsyncConnection, segment_id: str, body: SegmentIn, now: datetime
) -> Written:
    """Create or replace a segment definition."""
    check_id("id", segment_id)
    if body.high_value:
        for offer in await _active_clearance_offers(conn):
            if segment_id in offer.segments:
                raise InvalidField(
                    "high_value", f"active clearance offer {offer.id!r} targets this segment"
                )
    written = await _write(conn, segments, {"id": segment_id}, body.model_dump(), now)
    if written is not Written.UNCHANGED:
        await record_change(conn, "segment", segment_id, "upsert")
    return written


async def put_offer(conn: AsyncConnection, offer_id: str, body: OfferIn, now: datetime) -> Written:
    """Create or replace an offer; its segments must exist and, if clearance, not be high-value."""
    check_id("id", offer_id)
    result = await conn.execute(
        select(segments.c.id, segments.c.high_value).where(segments.c.id.in_(body.segments))
    )
    found = dict(result.all())
    for i, segment_id in enumerate(body.segments):
        if segment_id not in found:
            raise InvalidField(f"segments[{i}]", f"no segment {segment_id!r}")
        if body.clearance and found[segment_id]:
            raise InvalidField(
                f"segments[{i}]", f"a clearance offer cannot target high-value {segment_id!r}"
            )
    values = body.model_dump()
    values["segments"] = list(dict.fromkeys(body.segments))
    written = await _write(conn, offers, {"id": offer_id}, values, now)
    if written is not Written.UNCHANGED:
        await record_change(conn, "offer", offer_id, "upsert")
    return written


async def _active_clearance_offers(conn: AsyncConnection) -> list[Any]:
    result = await conn.execute(
        select(offers.c.id, offers.c.segments).where(
            offers.c.clearance.is_(True), offers.c.active.is_(True)
        )
    )
    return list(result)


def _split(record: Any, keys: tuple[str, ...]) -> tuple[list[str], dict[str, Any]]:
    """The record's key fields (which must be strings) and the rest of it."""
    if not isinstance(record, dict):
        raise InvalidField("(top level)", "a JSON object")
    rest = dict(record)
    found = []
    for key in keys:
        value = rest.pop(key, None)
        if not isinstance(value, str):
            raise InvalidField(key, "missing" if value is None else "a string")
        found.append(value)
    return found, rest


async def _import_one(
    conn: AsyncConnection, entity: str, record: Any, crypt: FieldCrypt, now: datetime
) -> None:
    if entity == "catalogue":
        (sku,), rest = _split(record, ("sku",))
        await put_catalogue(conn, sku, CatalogueIn.model_validate(rest), now)
    elif entity == "staff":
        (store_id, staff_id), rest = _split(record, ("store_id", "id"))
        await put_staff(conn, store_id, staff_id, StaffIn.model_validate(rest), now)
    elif entity == "segments":
        (segment_id,), rest = _split(record, ("id",))
        await put_segment(conn, segment_id, SegmentIn.model_validate(rest), now)
    elif entity == "offers":
        (offer_id,), rest = _split(record, ("id",))
        await put_offer(conn, offer_id, OfferIn.model_validate(rest), now)
    else:
        (member_id,), rest = _split(record, ("id",))
        await put_member(conn, crypt, member_id, MemberIn.model_validate(rest), now)


async def import_ndjson(
    conn: AsyncConnection,
    entity: str,
    lines: Iterable[str],
    crypt: FieldCrypt,
    now: datetime | None = None,
) -> int:
    """Create or replace one record per non-blank line; the number of records.

    ``entity`` is one of catalogue, staff, segments, offers, members (import in that order:
    offers name segments, members name staff). Each line holds the PUT body plus the key:
    ``sku``; ``store_id`` and ``id``; or ``id``. ImportFailed names the line and field.
    """
    if entity not in ENTITIES:
        raise ImportFailed(f"unknown entity {entity!r}; one of {', '.join(ENTITIES)}")
    when = db.utc(now) if now is not None else db.utc_now()
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            await _import_one(conn, entity, record, crypt, when)
        except json.JSONDecodeError as err:
            raise ImportFailed(f"line {number}: not JSON: {err}") from err
        except ValidationError as err:
            detail = "; ".join(f"{f}: {m}" for f, m in problems(err))
            raise ImportFailed(f"line {number}: {detail}") from err
        except InvalidField as err:
            raise ImportFailed(f"line {number}: {err}") from err
        count += 1
    return count


async def _answer(
    request: web.Request, write: Callable[[AsyncConnection, datetime], Awaitable[Written]]
) -> web.Response:
    """Run write(conn, now) in a write transaction; 201 when it created, else 200."""
    try:
        async with db.begin_write(request.app[appkeys.ENGINE]) as conn:
            written = await write(conn, db.utc_now())
    except InvalidField as err:
        raise invalid_field(err) from err
    return web.json_response(
        {"result": written.value}, status=201 if written is Written.CREATED else 200
    )


async def _put_catalogue(request: web.Request) -> web.Response:
    await require_hq(request)
    sku = request.match_info["sku"]
    body = await read_model(request, CatalogueIn)
    return await _answer(request, lambda conn, now: put_catalogue(conn, sku, body, now))


async def _put_staff(request: web.Request) -> web.Response:
    await require_hq(request)
    store_id, staff_id = request.match_info["store_id"], request.match_info["staff_id"]
    body = await read_model(request, StaffIn)
    async with request.app[appkeys.ENGINE].connect() as conn:
        if await conn.scalar(select(stores.c.id).where(stores.c.id == store_id)) is None:
            raise auth.json_error(404, "not_found", f"no store {store_id}")
    return await _answer(request, lambda conn, now: put_staff(conn, store_id, staff_id, body, now))


async def _put_segment(request: web.Request) -> web.Response:
    await require_hq(request)
    segment_id = request.match_info["segment_id"]
    body = await read_model(request, SegmentIn)
    return await _answer(request, lambda conn, now: put_segment(conn, segment_id, body, now))


async def _put_offer(request: web.Request) -> web.Response:
    await require_hq(request)
    offer_id = request.match_info["offer_id"]
    body = await read_model(request, OfferIn)
    return await _answer(request, lambda conn, now: put_offer(conn, offer_id, body, now))


def setup_routes(app: web.Application) -> None:
    """Register the HQ PUT endpoints for catalogue, staff, segments and offers."""
    app.router.add_put("/v1/catalogue/{sku}", _put_catalogue)
    app.router.add_put("/v1/stores/{store_id}/staff/{staff_id}", _put_staff)
    app.router.add_put("/v1/segments/{segment_id}", _put_segment)
    app.router.add_put("/v1/offers/{offer_id}", _put_offer)
