"""Download: the store's slice arrives in the replica, deletions too, each page and its cursor in
one transaction; member personal data is sealed at rest."""

import asyncio
import contextlib
import dataclasses
import sqlite3
from collections.abc import AsyncIterator

import msgspec
import pytest

from agent.db import DatabaseError
from agent.replica import get_member
from agent.storekey import load_or_create_store_key
from agent.sync.client import BadAnswer, Change, CloudClient
from agent.sync.download import Downloader, apply_changes
from agent.sync.epoch import EpochKeeper
from tests.sync.conftest import FAST, Cloud, Store

NAME = "Wang Xiaoming 王小明"
PHONE = "+8613912345678"


async def seed(cloud: Cloud) -> None:
    """HQ defines a slice for store S001 through the cloud's API."""
    await cloud.hq_ok(
        "PUT",
        "/v1/segments/vip",
        {"name": "VIP", "kind": "tags", "rule": {"any": ["vip"]}, "high_value": True},
    )
    await cloud.hq_ok(
        "PUT", "/v1/segments/deals", {"name": "Deals", "kind": "tags", "rule": {"any": ["deals"]}}
    )
    await cloud.hq_ok(
        "PUT",
        "/v1/offers/o-preview",
        {"text": "Private preview", "segments": ["vip"], "clearance": False, "priority": 10},
    )
    await cloud.hq_ok(
        "PUT",
        "/v1/offers/o-clear",
        {"text": "Clearance 70% off", "segments": [], "clearance": True, "priority": 50},
    )
    await cloud.hq_ok(
        "PUT",
        "/v1/catalogue/JKT-1",
        {
            "gtin": "06901234567892",
            "name": "Trail jacket",
            "price": 59900,
            "currency": "CNY",
            "category": "outerwear",
        },
    )
    await cloud.hq_ok("PUT", "/v1/stores/S001/staff/A07", {"name": "Li Na"})
    await cloud.hq_ok(
        "PUT",
        "/v1/members/M-1",
        {
            "name": NAME,
            "phone": PHONE,
            "consent": True,
            "home_store": "S001",
            "associate_id": "A07",
        },
    )
    await cloud.hq_ok("POST", "/v1/members/M-1/tags", {"add": ["vip", "runner"]})


@contextlib.asynccontextmanager
async def downloader(store: Store, cloud: Cloud) -> AsyncIterator[Downloader]:
    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    async with CloudClient(cloud.url, "S001", key) as client:
        epochs = EpochKeeper(store.db, client)
        yield Downloader(store.db, client, epochs, await store.seal(), FAST)


async def test_the_slice_arrives_and_an_erased_member_disappears(
    store: Store, cloud: Cloud
) -> None:
    await seed(cloud)
    async with downloader(store, cloud) as down:
        assert await down.pull() > 0
        assert await store.rows("SELECT * FROM catalogue") == [
            ("JKT-1", "06901234567892", "Trail jacket", 59900, "CNY", "outerwear")
        ]
        assert await store.rows("SELECT * FROM staff") == [("A07", "Li Na", 1)]
        assert await store.rows("SELECT id, name, kind, high_value FROM segments ORDER BY id") == [
            ("deals", "Deals", "tags", 0),
            ("vip", "VIP", "tags", 1),
        ]
        assert await store.rows("SELECT id, segments, clearance, priority, active FROM offers") in (
            [("o-clear", "[]", 1, 50, 1), ("o-preview", '["vip"]', 0, 10, 1)],
            [("o-preview", '["vip"]', 0, 10, 1), ("o-clear", "[]", 1, 50, 1)],
        )
        member = await get_member(store.db.reader, await store.seal(), "M-1")
        assert member is not None
        assert (member.personal.name, member.personal.phone) == (NAME, PHONE)
        assert sorted(member.personal.tags) == ["runner", "vip"]
        assert (member.home_store, member.associate_id, member.segments) == (
            "S001",
            "A07",
            ("vip",),
        )
        cursor = await store.value("SELECT value FROM sync_state WHERE key = 'cursor'")
        assert int(cursor) == await cloud.scalar("SELECT max(cursor) FROM changes")

        assert await cloud.hq("DELETE", "/v1/members/M-1") == (200, {"id": "M-1", "erased": True})
        await down.pull()
    assert await store.value("SELECT count(*) FROM members") == 0


async def test_member_personal_data_is_not_in_the_file(store: Store, cloud: Cloud) -> None:
    await seed(cloud)
    async with downloader(store, cloud) as down:
        await down.pull()
    assert await store.value("SELECT count(*) FROM members") == 1
    data_dir = store.config.store.data_dir
    # The WAL holds the latest pages until a checkpoint: both files are the database at rest.
    for path in (data_dir / "agent.db", data_dir / "agent.db-wal"):
        raw = await asyncio.to_thread(path.read_bytes)
        assert raw
        for secret in (NAME, "Xiaoming", "王小明", PHONE, PHONE[3:], "runner"):
            assert secret.encode() not in raw, (path.name, secret)


async def test_a_page_and_its_cursor_commit_together(store: Store, cloud: Cloud) -> None:
    await seed(cloud)
    # The disk fails at the last table of the page: nothing of the page may stay behind.
    async with store.db.write() as conn:
        await conn.execute(
            "CREATE TRIGGER fail_offer BEFORE INSERT ON offers"
            " BEGIN SELECT RAISE(ABORT, 'disk failed'); END"
        )
    async with downloader(store, cloud) as down:
        with pytest.raises((DatabaseError, sqlite3.IntegrityError)):
            await down.pull()
        for table in ("members", "catalogue", "staff", "segments", "offers"):
            assert await store.value(f"SELECT count(*) FROM {table}") == 0, table
        assert await store.value("SELECT value FROM sync_state WHERE key = 'cursor'") is None
        async with store.db.write() as conn:
            await conn.execute("DROP TRIGGER fail_offer")
        await down.pull()
    assert await store.value("SELECT count(*) FROM members") == 1
    assert await store.value("SELECT count(*) FROM offers") == 2


async def test_feed_pages_follow_each_other(store: Store, cloud: Cloud) -> None:
    for i in range(25):
        await cloud.hq_ok(
            "PUT",
            f"/v1/catalogue/SKU-{i:02d}",
            {"name": f"Item {i}", "price": 100 + i, "currency": "CNY", "category": "misc"},
        )
    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    small = dataclasses.replace(FAST, changes_limit=4)
    async with CloudClient(cloud.url, "S001", key) as client:
        epochs = EpochKeeper(store.db, client)
        assert await Downloader(store.db, client, epochs, await store.seal(), small).pull() == 25
    assert await store.value("SELECT count(*) FROM catalogue") == 25


async def test_unknown_entities_and_absent_deletes_are_harmless(store: Store) -> None:
    changes = [
        Change(1, "review", "R-1", "upsert", msgspec.Raw(b'{"stars": 5}')),
        Change(2, "member", "M-404", "delete"),
        Change(
            3,
            "staff",
            "A01",
            "upsert",
            msgspec.Raw(b'{"id": "A01", "name": "Zhao", "active": true}'),
        ),
    ]
    async with store.db.write() as conn:
        await apply_changes(conn, await store.seal(), changes, "2026-11-28T00:00:00.000Z")
    assert await store.rows("SELECT * FROM staff") == [("A01", "Zhao", 1)]


async def test_unreadable_data_fails_the_page(store: Store) -> None:
    changes = [Change(7, "catalogue", "X", "upsert", msgspec.Raw(b'{"sku": "X", "price": "free"}'))]
    with pytest.raises(BadAnswer, match="change 7 \\(catalogue X\\): unreadable data"):
        async with store.db.write() as conn:
            await apply_changes(conn, await store.seal(), changes, "2026-11-28T00:00:00.000Z")
