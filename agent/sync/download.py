"""Download: the store's change feed is applied to the replica, page by page.

Each page and the cursor after it commit in one transaction, so the replica never holds half a
page and never skips one. Upserts replace the whole row, deletes (tombstones) remove it, and a
delete for a row the store does not hold is a no-op. Entities this version does not know are
skipped, so a newer cloud does not stall older stores; an entity it knows but cannot read
fails the page (and is retried) rather than being half-applied.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import msgspec

from agent.db import Database, Durability
from agent.outbox import utc_iso
from agent.replica import Member, MemberSeal, Personal, put_members
from agent.sync.client import NULL, BadAnswer, Change, CloudClient, EpochChanged
from agent.sync.epoch import EpochKeeper
from agent.sync.settings import SyncSettings
from agent.sync.state import state_value, write_state

log = logging.getLogger(__name__)


class _Data(msgspec.Struct, kw_only=True):
    pass


class MemberData(_Data, kw_only=True):
    """``member`` data of the feed."""

    id: str
    name: str
    phone: str | None = None
    consent: bool
    home_store: str | None = None
    associate_id: str | None = None
    tags: list[str]
    segments: list[str]


class CatalogueData(_Data, kw_only=True):
    """``catalogue`` data of the feed."""

    sku: str
    gtin: str | None = None
    name: str
    price: int
    currency: str
    category: str


class StaffData(_Data, kw_only=True):
    """``staff`` data of the feed."""

    id: str
    name: str
    active: bool


class SegmentData(_Data, kw_only=True):
    """``segment`` data of the feed."""

    id: str
    name: str
    kind: str
    high_value: bool


class OfferData(_Data, kw_only=True):
    """``offer`` data of the feed; ``segments: []`` targets every member."""

    id: str
    text: str
    segments: list[str]
    clearance: bool
    priority: int
    active: bool


# entity -> (table, key column, data type)
ENTITIES: dict[str, tuple[str, str, type[_Data]]] = {
    "member": ("members", "id", MemberData),
    "catalogue": ("catalogue", "sku", CatalogueData),
    "staff": ("staff", "id", StaffData),
    "segment": ("segments", "id", SegmentData),
    "offer": ("offers", "id", OfferData),
}

_REPLACE = {
    "catalogue": "INSERT OR REPLACE INTO catalogue (sku, gtin, name, price, currency, category)"
    " VALUES (?, ?, ?, ?, ?, ?)",
    "staff": "INSERT OR REPLACE INTO staff (id, name, active) VALUES (?, ?, ?)",
    "segment": "INSERT OR REPLACE INTO segments (id, name, kind, high_value) VALUES (?, ?, ?, ?)",
    "offer": "INSERT OR REPLACE INTO offers (id, text, segments, clearance, priority, active)"
    " VALUES (?, ?, ?, ?, ?, ?)",
}


def _row(data: _Data) -> tuple[Any, ...]:
    match data:
        case CatalogueData():
            return (data.sku, data.gtin, data.name, data.price, data.currency, data.category)
        case StaffData():
            return (data.id, data.name, int(data.active))
        case SegmentData():
            return (data.id, data.name, data.kind, int(data.high_value))
        case OfferData():
            segments = json.dumps(data.segments)
            return (
                data.id,
                data.text,
                segments,
                int(data.clearance),
                data.priority,
                int(data.active),
            )
    raise TypeError(type(data).__name__)


def _member(data: MemberData) -> Member:
    personal = Personal(data.name, data.phone, data.consent, data.tags)
    return Member(data.id, personal, data.home_store, data.associate_id, tuple(data.segments))


def _decode(change: Change, data_type: type[_Data]) -> _Data:
    try:
        return msgspec.json.decode(change.data, type=data_type)
    except (msgspec.DecodeError, msgspec.ValidationError) as err:
        raise BadAnswer(
            f"change {change.cursor} ({change.entity} {change.id}): unreadable data: {err}"
        ) from err


async def apply_changes(
    conn: aiosqlite.Connection, seal: MemberSeal, changes: Sequence[Change], now: str
) -> None:
    """Apply a page of changes inside the caller's write transaction."""
    # Each entry carries its entity's state when the page was read, so an entity appearing
    # twice in a page says the same thing twice: grouping by entity cannot reorder anything.
    members: list[Member] = []
    rows: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    deletes: dict[str, list[tuple[str]]] = defaultdict(list)
    for change in changes:
        entity = ENTITIES.get(change.entity)
        if entity is None:
            log.debug("change %d: entity %r is not replicated here", change.cursor, change.entity)
        elif change.op == "delete" or change.data == NULL:
            deletes[change.entity].append((change.id,))
        elif change.op == "upsert":
            data = _decode(change, entity[2])
            if isinstance(data, MemberData):
                members.append(_member(data))
            else:
                rows[change.entity].append(_row(data))
        else:
            raise BadAnswer(f"change {change.cursor}: unknown op {change.op!r}")
    for name, keys in deletes.items():
        table, key, _ = ENTITIES[name]
        await conn.executemany(f"DELETE FROM {table} WHERE {key} = ?", keys)  # noqa: S608
    if members:
        await put_members(conn, seal, members, now)
    for name, values in rows.items():
        await conn.executemany(_REPLACE[name], values)


class Downloader:
    """Pulls the change feed into the replica; :meth:`pull` is one round."""

    def __init__(
        self,
        db: Database,
        client: CloudClient,
        epochs: EpochKeeper,
        seal: MemberSeal,
        settings: SyncSettings,
    ) -> None:
        self._db = db
        self._client = client
        self._epochs = epochs
        self._seal = seal
        self._limit = settings.changes_limit

    async def pull(self) -> int:
        """Apply pages until the feed has no more now; return how many changes were applied."""
        applied = 0
        while True:
            since = int(await state_value(self._db.reader, "cursor") or 0)
            page = await self._client.get_changes(since, self._limit)
            now = utc_iso(datetime.now(UTC))
            async with self._db.write(Durability.NORMAL) as conn:
                if await state_value(conn, "epoch") != page.epoch:
                    raise EpochChanged(page.epoch)
                if int(await state_value(conn, "cursor") or 0) != since:
                    # A resync reset the cursor while this page was on its way: read again.
                    continue
                await apply_changes(conn, self._seal, page.changes, now)
                await write_state(conn, {"cursor": str(page.cursor), "last_success_at": now})
            self._epochs.confirm()
            applied += len(page.changes)
            if not page.more:
                return applied
