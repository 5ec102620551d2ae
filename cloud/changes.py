"""The store change feed: what each store pulls to keep its replica slice current.

A row in ``changes`` says "this entity changed; stores that should hold it, come and get it".
Member and staff rows name the store they are for (a member change is fanned out to every
store holding the member); catalogue, segment and offer rows have ``store_id`` NULL and go to
every store.

The feed is state-based. A page carries each entity's state *when the page is read*: the
current row (an upsert) or, when the row is gone or the member is outside the store's slice,
a tombstone (a delete). So an older row for the same (entity, id, store) says nothing a newer
row does not, and recording a change deletes the rows it supersedes: the table stays about
one row per (entity, id, store), and a full resync (``since=0``) reads each entity once.

A member is in a store's slice when its home store is the store, or when it bought there (a
``member_stores`` row) in the last 365 days. Every way into a slice records a row for that
store; every way out (home store moved, link older than the window, member erased) records
one too, and the feed then answers it with a tombstone.

Cursors are the table's autoincrement key. On PostgreSQL, transactions could commit their
cursors out of order and a store would skip the late one; recording a change therefore takes
a transaction-scoped advisory lock, so change-writing transactions commit in cursor order.
SQLite has a single writer and needs nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from aiohttp import web
from sqlalchemy import (
    Row,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud import appkeys, auth
from cloud.db import insert_for, utc
from cloud.fieldcrypt import FIELD_CRYPT, FieldCrypt, FieldCryptError
from cloud.schema import (
    catalogue,
    changes,
    member_segments,
    member_stores,
    member_tags,
    members,
    offers,
    segments,
    staff,
)

log = logging.getLogger(__name__)

ENTITIES = frozenset({"member", "catalogue", "staff", "segment", "offer"})
OPS = frozenset({"upsert", "delete"})
SLICE_WINDOW = timedelta(days=365)
DEFAULT_LIMIT = 500
MAX_LIMIT = 2000
# Arbitrary constant naming the feed's advisory lock on PostgreSQL ("sl" + "feed").
_FEED_LOCK = 0x736C_6665_6564

# Well under SQLite's 32,766 and PostgreSQL's 65,535 bound parameters per statement.
IN_CHUNK = 5000
T = TypeVar("T")

# (entity, entity_id, store_id or None for every store, op)
ChangeKey = tuple[str, str, str | None, str]


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of a page: the entity's current state, or None for a tombstone."""

    cursor: int
    entity: str
    id: str
    data: dict[str, Any] | None

    def as_json(self) -> dict[str, Any]:
        """The wire form of sync-protocol.md."""
        op = "delete" if self.data is None else "upsert"
        return {
            "cursor": self.cursor,
            "entity": self.entity,
            "id": self.id,
            "op": op,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class ChangePage:
    """A page of a store's feed; ``cursor`` is the ``since`` of the next request."""

    cursor: int
    more: bool
    changes: list[Change]


async def record_change(
    conn: AsyncConnection, entity: str, entity_id: str, op: str, store_id: str | None = None
) -> None:
    """Record that an entity changed; a member change with no store goes to all its holders."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown change entity {entity!r}")
    if op not in OPS:
        raise ValueError(f"unknown change op {op!r}")
    if entity == "member" and store_id is None:
        await record_member_changes(conn, [entity_id], op)
        return
    if entity == "staff" and store_id is None:
        raise ValueError("a staff change needs the staff member's store_id")
    await append_changes(conn, [(entity, entity_id, store_id, op)])


async def record_member_changes(
    conn: AsyncConnection,
    member_ids: Collection[str],
    op: str = "upsert",
    also: Iterable[tuple[str, str]] = (),
) -> None:
    """Record a change of each member for every store holding it and for the pairs in also."""
    holders = await member_holders(conn, member_ids)
    holders.update(also)
    await append_changes(conn, [("member", m, s, op) for m, s in sorted(holders)])


async def member_holders(
    conn: AsyncConnection, member_ids: Collection[str]
) -> set[tuple[str, str]]:
    """(member, store) pairs whose store holds the member: its home store and its store links."""
    pairs: set[tuple[str, str]] = set()
    for part in chunks(sorted(member_ids)):
        homes = await conn.execute(
            select(members.c.id, members.c.home_store).where(
                members.c.id.in_(part), members.c.home_store.is_not(None)
            )
        )
        pairs.update((m, s) for m, s in homes)
        links = await conn.execute(
            select(member_stores.c.member_id, member_stores.c.store_id).where(
                member_stores.c.member_id.in_(part)
            )
        )
        pairs.update((m, s) for m, s in links)
    return pairs


async def append_changes(conn: AsyncConnection, rows: Sequence[ChangeKey]) -> None:
    """Append change rows in order, deleting the older rows each one supersedes."""
    unique = list(dict.fromkeys(rows))
    if not unique:
        return
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEED_LOCK})
    newest = await conn.scalar(select(func.max(changes.c.cursor))) or 0
    at = datetime.now(UTC)
    await conn.execute(
        insert(changes),
        [
            {"entity": e, "entity_id": i, "store_id": s, "op": op, "at": at}
            for e, i, s, op in unique
        ],
    )
    # Deleting only after inserting: SQLite gives a new row the highest cursor + 1, so
    # deleting the highest row first would hand its cursor out again and stores that had
    # already read it would skip the new row.
    older = changes.c.cursor <= newest
    targeted = [{"b_entity": e, "b_id": i, "b_store": s} for e, i, s, _ in unique if s is not None]
    shared = [{"b_entity": e, "b_id": i} for e, i, s, _ in unique if s is None]
    if targeted:
        await conn.execute(
            delete(changes).where(
                older,
                changes.c.entity == bindparam("b_entity"),
                changes.c.entity_id == bindparam("b_id"),
                changes.c.store_id == bindparam("b_store"),
            ),
            targeted,
        )
    if shared:
        await conn.execute(
            delete(changes).where(
                older,
                changes.c.entity == bindparam("b_entity"),
                changes.c.entity_id == bindparam("b_id"),
                changes.c.store_id.is_(None),
            ),
            shared,
        )


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most size items, for IN lists and executemany batches."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def link_member_to_store(
    conn: AsyncConnection, member_id: str, store_id: str, at: datetime
) -> None:
    """Note that the member bought at the store at ``at``; the store pulls it if it is new there."""
    at = utc(at)
    previous = await conn.scalar(
        select(member_stores.c.last_seen_at).where(
            member_stores.c.member_id == member_id, member_stores.c.store_id == store_id
        )
    )
    stmt = insert_for(conn, member_stores)
    # Keep the latest purchase: sales of an offline store may arrive out of order.
    stmt = stmt.on_conflict_do_update(
        index_elements=["member_id", "store_id"],
        set_={"last_seen_at": stmt.excluded.last_seen_at},
        where=stmt.excluded.last_seen_at > member_stores.c.last_seen_at,
    )
    await conn.execute(stmt, {"member_id": member_id, "store_id": store_id, "last_seen_at": at})
    home = await conn.execute(select(members.c.home_store).where(members.c.id == member_id))
    member = home.first()
    if member is None:
        # An unknown member: the link stays, and creating the member notifies this store.
        return
    # A sale too old to put the member in the slice still records a change: the feed
    # decides at read time and answers it with a harmless tombstone.
    was_in_slice = member.home_store == store_id or (
        previous is not None and utc(previous) >= at - SLICE_WINDOW
    )
    if not was_in_slice:
        await append_changes(conn, [("member", member_id, store_id, "upsert")])


async def expire_member_links(conn: AsyncConnection, now: datetime) -> int:
    """Drop store links older than the slice window, telling each store to drop the member."""
    cutoff = utc(now) - SLICE_WINDOW
    stale = await conn.execute(
        select(member_stores.c.member_id, member_stores.c.store_id)
        .join(members, members.c.id == member_stores.c.member_id)
        .where(member_stores.c.last_seen_at < cutoff)
        .where(members.c.home_store.is_distinct_from(member_stores.c.store_id))
    )
    pairs = sorted((m, s) for m, s in stale)
    await append_changes(conn, [("member", m, s, "upsert") for m, s in pairs])
    await conn.execute(delete(member_stores).where(member_stores.c.last_seen_at < cutoff))
    return len(pairs)


async def read_changes(
    conn: AsyncConnection,
    crypt: FieldCrypt,
    store_id: str,
    since: int,
    limit: int,
    now: datetime,
) -> ChangePage:
    """One page of the store's feed after cursor ``since``: at most ``limit`` changes."""
    cols = (changes.c.cursor, changes.c.entity, changes.c.entity_id)
    # Two index range scans (the store's rows, the shared rows) merged, instead of an OR
    # that a planner may turn into a full scan.
    own = (
        select(*cols)
        .where(changes.c.store_id == store_id, changes.c.cursor > since)
        .order_by(changes.c.cursor)
        .limit(limit + 1)
        .subquery()
    )
    shared = (
        select(*cols)
        .where(changes.c.store_id.is_(None), changes.c.cursor > since)
        .order_by(changes.c.cursor)
        .limit(limit + 1)
        .subquery()
    )
    both = union_all(select(own), select(shared)).subquery()
    result = await conn.execute(select(both).order_by(both.c.cursor).limit(limit + 1))
    rows = result.all()
    more = len(rows) > limit
    rows = rows[:limit]
    states = await _current_states(conn, crypt, store_id, rows, utc(now))
    page = [
        Change(r.cursor, r.entity, r.entity_id, states.get((r.entity, r.entity_id))) for r in rows
    ]
    return ChangePage(cursor=rows[-1].cursor if rows else since, more=more, changes=page)


async def _current_states(
    conn: AsyncConnection,
    crypt: FieldCrypt,
    store_id: str,
    rows: Sequence[Row[Any]],
    now: datetime,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Current data of each entity in the page that exists and is in the store's slice."""
    ids: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        ids[row.entity].append(row.entity_id)
    states: dict[tuple[str, str], dict[str, Any]] = {}
    if ids["member"]:
        for member_id, data in (
            await member_states(conn, crypt, store_id, ids["member"], now)
        ).items():
            states["member", member_id] = data
    if ids["catalogue"]:
        result = await conn.execute(select(catalogue).where(catalogue.c.sku.in_(ids["catalogue"])))
        for r in result:
            states["catalogue", r.sku] = {
                "sku": r.sku,
                "gtin": r.gtin,
                "name": r.name,
                "price": r.price,
                "currency": r.currency,
                "category": r.category,
            }
    if ids["staff"]:
        result = await conn.execute(
            select(staff).where(staff.c.store_id == store_id, staff.c.staff_id.in_(ids["staff"]))
        )
        for r in result:
            states["staff", r.staff_id] = {
                "id": r.staff_id,
                "store_id": r.store_id,
                "name": r.name,
                "active": r.active,
            }
    if ids["segment"]:
        result = await conn.execute(select(segments).where(segments.c.id.in_(ids["segment"])))
        for r in result:
            states["segment", r.id] = {
                "id": r.id,
                "name": r.name,
                "kind": r.kind,
                "high_value": r.high_value,
            }
    if ids["offer"]:
        result = await conn.execute(select(offers).where(offers.c.id.in_(ids["offer"])))
        for r in result:
            states["offer", r.id] = {
                "id": r.id,
                "text": r.text,
                "segments": list(r.segments),
                "clearance": r.clearance,
                "priority": r.priority,
                "active": r.active,
            }
    return states


async def member_states(
    conn: AsyncConnection,
    crypt: FieldCrypt,
    store_id: str,
    member_ids: Sequence[str],
    now: datetime,
) -> dict[str, dict[str, Any]]:
    """The wire data of each given member that is in the store's slice now."""
    link = and_(member_stores.c.member_id == members.c.id, member_stores.c.store_id == store_id)
    result = await conn.execute(
        select(
            members.c.id,
            members.c.name,
            members.c.phone_enc,
            members.c.consent,
            members.c.home_store,
            members.c.associate_id,
            member_stores.c.last_seen_at,
        )
        .select_from(members.outerjoin(member_stores, link))
        .where(members.c.id.in_(member_ids))
    )
    cutoff = now - SLICE_WINDOW
    in_slice = [
        r
        for r in result
        if r.home_store == store_id
        or (r.last_seen_at is not None and utc(r.last_seen_at) >= cutoff)
    ]
    if not in_slice:
        return {}
    wanted = [r.id for r in in_slice]
    tags: dict[str, list[str]] = defaultdict(list)
    tag_rows = await conn.execute(
        select(member_tags.c.member_id, member_tags.c.tag)
        .where(member_tags.c.member_id.in_(wanted), member_tags.c.present.is_(True))
        .order_by(member_tags.c.member_id, member_tags.c.tag)
    )
    for member_id, tag in tag_rows:
        tags[member_id].append(tag)
    segs: dict[str, list[str]] = defaultdict(list)
    seg_rows = await conn.execute(
        select(member_segments.c.member_id, member_segments.c.segment_id)
        .where(member_segments.c.member_id.in_(wanted))
        .order_by(member_segments.c.member_id, member_segments.c.segment_id)
    )
    for member_id, segment_id in seg_rows:
        segs[member_id].append(segment_id)
    return {
        r.id: {
            "id": r.id,
            "name": r.name,
            "phone": _phone(crypt, r.id, r.phone_enc),
            "consent": r.consent,
            "home_store": r.home_store,
            "associate_id": r.associate_id,
            "tags": tags[r.id],
            "segments": segs[r.id],
        }
        for r in in_slice
    }


def _phone(crypt: FieldCrypt, member_id: str, blob: bytes | None) -> str | None:
    if blob is None:
        return None
    try:
        return crypt.decrypt(blob)
    except FieldCryptError:
        # One unreadable field must not stall the whole store's feed; the rest of the
        # member still syncs and the log names the row to repair.
        log.error("member %s: stored phone does not decrypt; sent without phone", member_id)  # noqa: TRY400 - expected condition
        return None


def _query_int(request: web.Request, name: str, default: int, minimum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise auth.json_error(400, "bad_query", f"{name}: must be an integer >= {minimum}")
    return value


async def _get_changes(request: web.Request) -> web.Response:
    store_id = auth.verified_store_id(request)
    since = _query_int(request, "since", 0, 0)
    limit = min(_query_int(request, "limit", DEFAULT_LIMIT, 1), MAX_LIMIT)
    crypt = request.app[FIELD_CRYPT]
    async with request.app[appkeys.ENGINE].connect() as conn:
        page = await read_changes(conn, crypt, store_id, since, limit, datetime.now(UTC))
    return web.json_response(
        {
            "epoch": request.app[appkeys.EPOCH],
            "cursor": page.cursor,
            "more": page.more,
            "changes": [c.as_json() for c in page.changes],
        }
    )


def setup_routes(app: web.Application) -> None:
    """Register GET /v1/stores/{store_id}/changes."""
    app.router.add_get("/v1/stores/{store_id}/changes", _get_changes)
