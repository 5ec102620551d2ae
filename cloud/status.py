"""Store health: heartbeats from the sync daemons, and the sync status regional staff read.

``POST /v1/stores/{store_id}/heartbeat`` (store-signed) keeps the latest heartbeat per store;
its ``at`` column is when the cloud received it, so "online" does not depend on the store's
clock. ``GET /v1/sync-status`` (user token) lists the stores the caller may see: a regional
token its region's, an HQ token all of them.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud import appkeys, auth, db
from cloud.ereceipt import connection_rates, counts_by_store
from cloud.schema import events, heartbeats, rejected_events, sales, stores

log = logging.getLogger(__name__)

ONLINE_WITHIN = timedelta(minutes=3)
_MAX_HEARTBEAT_BYTES = 64 * 1024
_MAX_ERROR = 2000
_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Heartbeat(msgspec.Struct):
    """The heartbeat body (sync-protocol.md); fields the protocol adds later are ignored."""

    backlog: _Count
    rejected: Annotated[int, msgspec.Meta(ge=0, le=2**31 - 1)]
    at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    oldest_unsent_age_s: Annotated[float, msgspec.Meta(ge=0, le=2**31 - 1)] | None = None
    last_success_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    last_error: str | None = None
    devices: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)
    version: Annotated[str, msgspec.Meta(max_length=32)] | None = None


async def _post_heartbeat(request: web.Request) -> web.Response:
    """``POST /v1/stores/{store_id}/heartbeat``."""
    store_id = auth.verified_store_id(request)
    try:
        beat = msgspec.json.decode(
            await auth.read_body(request, _MAX_HEARTBEAT_BYTES), type=Heartbeat
        )
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise auth.json_error(400, "bad_heartbeat", str(err)) from err
    values = {
        "at": db.utc_now(),
        "backlog": beat.backlog,
        "oldest_unsent_age_s": None
        if beat.oldest_unsent_age_s is None
        else round(beat.oldest_unsent_age_s),
        "last_success_at": None if beat.last_success_at is None else db.utc(beat.last_success_at),
        "last_error": None if beat.last_error is None else beat.last_error[:_MAX_ERROR],
        "rejected": beat.rejected,
        "devices": beat.devices,
        "version": beat.version,
    }
    async with db.begin_write(request.app[appkeys.ENGINE]) as conn:
        stmt = db.insert_for(conn, heartbeats).values(store_id=store_id, **values)
        await conn.execute(stmt.on_conflict_do_update(index_elements=["store_id"], set_=values))
    return web.json_response({"epoch": request.app[appkeys.EPOCH]})


async def sync_status(
    conn: AsyncConnection, user: auth.User, now: datetime
) -> list[dict[str, Any]]:
    """One entry per store the user may see, ordered by store id."""
    last_event_at = (
        select(events.c.received_at)
        .where(events.c.store_id == stores.c.id)
        .order_by(events.c.seq.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = (
        await conn.execute(
            select(
                stores.c.id,
                stores.c.name,
                stores.c.region,
                stores.c.status,
                stores.c.enrolled_at,
                heartbeats.c.at,
                heartbeats.c.backlog,
                heartbeats.c.oldest_unsent_age_s,
                heartbeats.c.last_success_at,
                heartbeats.c.last_error,
                heartbeats.c.rejected,
                heartbeats.c.devices,
                heartbeats.c.version,
                last_event_at.label("last_event_at"),
            )
            .select_from(stores.outerjoin(heartbeats, heartbeats.c.store_id == stores.c.id))
            .where(auth.visible_stores(user))
            .order_by(stores.c.id)
        )
    ).all()
    ids = [row.id for row in rows]
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = await counts_by_store(
        conn,
        select(sales.c.store_id, func.count())
        .where(sales.c.store_id.in_(ids), sales.c.occurred_at >= midnight)
        .group_by(sales.c.store_id),
    )
    refused = await counts_by_store(
        conn,
        select(rejected_events.c.store_id, func.count())
        .where(rejected_events.c.store_id.in_(ids))
        .group_by(rejected_events.c.store_id),
    )
    rates = await connection_rates(conn, ids)
    out = []
    for row in rows:
        beat_at = None if row.at is None else db.utc(row.at)
        rate = rates[row.id]
        out.append(
            {
                "store_id": row.id,
                "name": row.name,
                "region": row.region,
                "status": row.status,
                "enrolled": row.enrolled_at is not None,
                "enrolled_at": db.rfc3339(row.enrolled_at),
                "online": beat_at is not None and now - beat_at <= ONLINE_WITHIN,
                "last_heartbeat_at": db.rfc3339(beat_at),
                "backlog": row.backlog,
                "oldest_unsent_age_s": row.oldest_unsent_age_s,
                "last_success_at": db.rfc3339(row.last_success_at),
                "last_error": row.last_error,
                "rejected": row.rejected,
                "rejected_in_cloud": refused.get(row.id, 0),
                "devices": row.devices if row.devices is not None else {},
                "version": row.version,
                "last_event_received_at": db.rfc3339(row.last_event_at),
                "sales_today_utc": today.get(row.id, 0),
                "receipts_printed": rate.printed,
                "receipts_claimed": rate.claimed,
                "connection_rate": rate.rate,
            }
        )
    return out


async def _get_sync_status(request: web.Request) -> web.Response:
    """``GET /v1/sync-status``: the caller's stores (their region's, or all for HQ)."""
    user = await auth.require_user(request)
    now = db.utc_now()
    async with request.app[appkeys.ENGINE].connect() as conn:
        entries = await sync_status(conn, user, now)
    return web.json_response({"generated_at": db.rfc3339(now), "stores": entries})


def setup_routes(app: web.Application) -> None:
    """Register the heartbeat and sync-status endpoints."""
    app.router.add_post("/v1/stores/{store_id}/heartbeat", _post_heartbeat)
    app.router.add_get("/v1/sync-status", _get_sync_status)
