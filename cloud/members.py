"""Members (loyalty customers) as head office manages them: create, read, erase, tag, hand over.

Every write records member changes for the stores holding the member (see cloud.changes), so
their replicas follow. The phone number is stored encrypted with a keyed hash beside it
(cloud.fieldcrypt), normalised to digits with an optional leading ``+``.

**Erase** (``DELETE /v1/members/{id}``, the GDPR-style right to erasure) removes the member
row (name, phone, consent, associate) and everything derived from or attached to the member:
tags and tag operations, segment memberships, RFM cell, store links, receipt claims. Every
store that ever held the member gets a tombstone. Sales stay (they are the stores' books) with
``member_id`` set to NULL, so they no longer point at anyone; their receipts count as
unclaimed again (a kept claim would re-link a late-arriving sale). A sale or tag event from a
store that was offline during the erase can still carry the old id later: it is stored like
any unknown member id and does not bring the person back. The raw event log (``events``, the
exactly-once ledger) is not rewritten: its payloads keep the bare member id, which after the
erase identifies no one.

Regional users read a member only when its home store is in their region; outside it (or
without a home store) the answer is 404, so member ids cannot be probed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud import appkeys, auth, db
from cloud.changes import append_changes, member_holders, record_member_changes
from cloud.fieldcrypt import FIELD_CRYPT, FieldCrypt, FieldCryptError, normalise_phone
from cloud.schema import (
    changes,
    member_rfm,
    member_segments,
    member_stores,
    member_tag_ops,
    member_tags,
    members,
    receipt_claims,
    sales,
    staff,
    stores,
)
from cloud.segments import refresh_tag_segments
from cloud.tags import TAG_MAX, TagOp, apply_tag_ops, present_tags
from cloud.webjson import (
    InvalidField,
    check_id,
    invalid_field,
    read_model,
    require_hq,
    unprocessable,
)

log = logging.getLogger(__name__)

Tag = Annotated[str, StringConstraints(min_length=1, max_length=TAG_MAX)]


class MemberIn(BaseModel):
    """PUT /v1/members/{id} body: the member's whole record."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    phone: str | None = None
    consent: bool
    home_store: str | None = Field(default=None, min_length=1, max_length=32)
    associate_id: str | None = Field(default=None, min_length=1, max_length=32)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return None if value is None else normalise_phone(value)


class TagsIn(BaseModel):
    """POST /v1/members/{id}/tags body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    add: list[Tag] = Field(default_factory=list, max_length=50)
    remove: list[Tag] = Field(default_factory=list, max_length=50)


class HandoverIn(BaseModel):
    """POST /v1/members/{id}/handover body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    associate_id: str = Field(min_length=1, max_length=32)


async def _check_store(conn: AsyncConnection, store_id: str) -> None:
    if await conn.scalar(select(stores.c.id).where(stores.c.id == store_id)) is None:
        raise InvalidField("home_store", f"no store {store_id!r}")


async def _check_associate(conn: AsyncConnection, associate_id: str, home: str | None) -> None:
    """An associate must be active staff of the member's home store (any store without one)."""
    query = select(staff.c.store_id).where(
        staff.c.staff_id == associate_id, staff.c.active.is_(True)
    )
    if home is not None:
        query = query.where(staff.c.store_id == home)
    if await conn.scalar(query.limit(1)) is None:
        where = f"store {home}" if home is not None else "any store"
        raise InvalidField("associate_id", f"{associate_id!r} is not active staff of {where}")


async def put_member(
    conn: AsyncConnection, crypt: FieldCrypt, member_id: str, body: MemberIn, now: datetime
) -> bool:
    """Create or replace a member; True if it was created. InvalidField for bad references."""
    check_id("id", member_id)
    if body.home_store is not None:
        await _check_store(conn, body.home_store)
    if body.associate_id is not None:
        await _check_associate(conn, body.associate_id, body.home_store)
    old = (await conn.execute(select(members).where(members.c.id == member_id))).first()
    phone_hash = None if body.phone is None else crypt.phone_hash(body.phone)
    fields = {
        "name": body.name,
        "consent": body.consent,
        "home_store": body.home_store,
        "associate_id": body.associate_id,
    }
    if (
        old is not None
        and phone_hash == old.phone_hash
        and all(getattr(old, k) == v for k, v in fields.items())
    ):
        return False
    values = {
        **fields,
        "phone_enc": None if body.phone is None else crypt.encrypt(body.phone),
        "phone_hash": phone_hash,
        "updated_at": db.utc(now),
    }
    if old is None:
        await conn.execute(insert(members).values(id=member_id, created_at=db.utc(now), **values))
        # Tag operations may have arrived before the member did: they count from now on.
        await refresh_tag_segments(conn, [member_id])
    else:
        await conn.execute(update(members).where(members.c.id == member_id).values(**values))
    moved_from = old.home_store if old is not None else None
    also = [(member_id, moved_from)] if moved_from not in (None, body.home_store) else []
    await record_member_changes(conn, [member_id], also=also)
    return old is None


async def member_view(
    conn: AsyncConnection, crypt: FieldCrypt, member_id: str
) -> tuple[dict[str, Any], str | None] | None:
    """(the member as HQ sees it, its home store's region), or None if there is no member."""
    row = (
        await conn.execute(
            select(members, stores.c.region)
            .select_from(members.outerjoin(stores, stores.c.id == members.c.home_store))
            .where(members.c.id == member_id)
        )
    ).first()
    if row is None:
        return None
    tags = (await present_tags(conn, [member_id])).get(member_id, frozenset())
    segs = await conn.scalars(
        select(member_segments.c.segment_id)
        .where(member_segments.c.member_id == member_id)
        .order_by(member_segments.c.segment_id)
    )
    rfm = (
        await conn.execute(select(member_rfm).where(member_rfm.c.member_id == member_id))
    ).first()
    links = await conn.execute(
        select(member_stores.c.store_id, member_stores.c.last_seen_at)
        .where(member_stores.c.member_id == member_id)
        .order_by(member_stores.c.store_id)
    )
    try:
        phone = None if row.phone_enc is None else crypt.decrypt(row.phone_enc)
    except FieldCryptError:
        log.error("member %s: stored phone does not decrypt", member_id)  # noqa: TRY400 - expected condition
        phone = None
    view = {
        "id": row.id,
        "name": row.name,
        "phone": phone,
        "consent": row.consent,
        "home_store": row.home_store,
        "associate_id": row.associate_id,
        "tags": sorted(tags),
        "segments": list(segs),
        "rfm": None
        if rfm is None
        else {
            "cell": rfm.cell,
            "recency_days": rfm.recency_days,
            "frequency": rfm.frequency,
            "monetary": rfm.monetary,
            "computed_at": db.utc(rfm.computed_at).isoformat(),
        },
        "stores": [{"store_id": s, "last_seen_at": db.utc(t).isoformat()} for s, t in links],
        "created_at": db.utc(row.created_at).isoformat(),
        "updated_at": db.utc(row.updated_at).isoformat(),
    }
    return view, row.region


async def erase_member(conn: AsyncConnection, member_id: str) -> bool:
    """Erase the member and what hangs off it, tombstoning it for every store; False if absent."""
    if await conn.scalar(select(members.c.id).where(members.c.id == member_id)) is None:
        return False
    holders = await member_holders(conn, [member_id])
    # A store that was ever sent the member has a change row for it (rows are only ever
    # replaced by newer ones for the same store), so this finds stores that held it before.
    told = await conn.scalars(
        select(changes.c.store_id)
        .distinct()
        .where(
            changes.c.entity == "member",
            changes.c.entity_id == member_id,
            changes.c.store_id.is_not(None),
        )
    )
    holders.update((member_id, s) for s in told)
    for table in (member_tags, member_tag_ops, member_segments, member_rfm, member_stores):
        await conn.execute(delete(table).where(table.c.member_id == member_id))
    await conn.execute(update(sales).where(sales.c.member_id == member_id).values(member_id=None))
    await conn.execute(delete(receipt_claims).where(receipt_claims.c.member_id == member_id))
    await conn.execute(delete(members).where(members.c.id == member_id))
    await append_changes(conn, [("member", m, s, "delete") for m, s in sorted(holders)])
    return True


async def tag_member(
    conn: AsyncConnection, member_id: str, add: Sequence[str], remove: Sequence[str], now: datetime
) -> frozenset[str] | None:
    """HQ adds/removes tags (the stores' LWW path); the member's tags, or None if absent."""
    if await conn.scalar(select(members.c.id).where(members.c.id == member_id)) is None:
        return None
    both = sorted(set(add) & set(remove))
    if both:
        raise InvalidField("remove", f"{both[0]!r} is also in add")
    at = db.utc(now)
    ops = [TagOp(str(uuid.uuid4()), member_id, t, "add", at) for t in dict.fromkeys(add)]
    ops += [TagOp(str(uuid.uuid4()), member_id, t, "remove", at) for t in dict.fromkeys(remove)]
    await apply_tag_ops(conn, ops)
    return (await present_tags(conn, [member_id])).get(member_id, frozenset())


async def hand_over(
    conn: AsyncConnection, member_id: str, associate_id: str, now: datetime
) -> bool:
    """Assign the member to another associate; False if there is no such member."""
    home = (
        await conn.execute(select(members.c.home_store).where(members.c.id == member_id))
    ).first()
    if home is None:
        return False
    await _check_associate(conn, associate_id, home.home_store)
    await conn.execute(
        update(members)
        .where(members.c.id == member_id)
        .values(associate_id=associate_id, updated_at=db.utc(now))
    )
    await record_member_changes(conn, [member_id])
    return True


def _member_id(request: web.Request) -> str:
    member_id = request.match_info["member_id"]
    try:
        check_id("id", member_id)
    except InvalidField as err:
        raise invalid_field(err) from err
    return member_id


def _not_found(member_id: str) -> web.HTTPException:
    return auth.json_error(404, "not_found", f"no member {member_id}")


async def _put(request: web.Request) -> web.Response:
    await require_hq(request)
    member_id = _member_id(request)
    body = await read_model(request, MemberIn)
    crypt = request.app[FIELD_CRYPT]
    try:
        async with db.begin_write(request.app[appkeys.ENGINE]) as conn:
            created = await put_member(conn, crypt, member_id, body, db.utc_now())
            found = await member_view(conn, crypt, member_id)
    except InvalidField as err:
        raise invalid_field(err) from err
    assert found is not None
    return web.json_response(found[0], status=201 if created else 200)


async def _get(request: web.Request) -> web.Response:
    user = await auth.require_user(request)
    member_id = _member_id(request)
    async with request.app[appkeys.ENGINE].connect() as conn:
        found = await member_view(conn, request.app[FIELD_CRYPT], member_id)
    # Outside the caller's region it is "not found": a regional user cannot probe member ids.
    if found is None or not (
        user.role == "hq" or (found[1] is not None and auth.may_see_store(user, found[1]))
    ):
        raise _not_found(member_id)
    return web.json_response(found[0])


async def _delete(request: web.Request) -> web.Response:
    await require_hq(request)
    member_id = _member_id(request)
    async with db.begin_write(request.app[appkeys.ENGINE]) as conn:
        erased = await erase_member(conn, member_id)
    if not erased:
        raise _not_found(member_id)
    return web.json_response({"id": member_id, "erased": True})


async def _post_tags(request: web.Request) -> web.Response:
    await require_hq(request)
    member_id = _member_id(request)
    body = await read_model(request, TagsIn)
    if not body.add and not body.remove:
        raise unprocessable([("add", "give at least one tag in add or remove")])
    try:
        async with db.begin_write(request.app[appkeys.ENGINE]) as conn:
            tags = await tag_member(conn, member_id, body.add, body.remove, db.utc_now())
    except InvalidField as err:
        raise invalid_field(err) from err
    if tags is None:
        raise _not_found(member_id)
    return web.json_response({"id": member_id, "tags": sorted(tags)})


async def _post_handover(request: web.Request) -> web.Response:
    await require_hq(request)
    member_id = _member_id(request)
    body = await read_model(request, HandoverIn)
    try:
        async with db.begin_write(request.app[appkeys.ENGINE]) as conn:
            done = await hand_over(conn, member_id, body.associate_id, db.utc_now())
    except InvalidField as err:
        raise invalid_field(err) from err
    if not done:
        raise _not_found(member_id)
    return web.json_response({"id": member_id, "associate_id": body.associate_id})


def setup_routes(app: web.Application) -> None:
    """Register the HQ member endpoints under /v1/members/{member_id}."""
    app.router.add_put("/v1/members/{member_id}", _put)
    app.router.add_get("/v1/members/{member_id}", _get)
    app.router.add_delete("/v1/members/{member_id}", _delete)
    app.router.add_post("/v1/members/{member_id}/tags", _post_tags)
    app.router.add_post("/v1/members/{member_id}/handover", _post_handover)
