"""The store change feed: slices, current state, tombstones, paging and cursors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cloud.catalogue import CatalogueIn, StaffIn, put_catalogue, put_staff
from cloud.changes import expire_member_links, link_member_to_store, record_change
from cloud.db import begin_write
from cloud.members import MemberIn, put_member
from cloud.schema import changes
from tests.cloud.domain_db import NOW, Domain, add_sale, add_store, feed, open_domain, replica


@pytest.fixture
async def dom(tmp_path: Path) -> AsyncIterator[Domain]:
    async with open_domain(tmp_path) as domain:
        async with begin_write(domain.engine) as conn:
            for store in ("S1", "S2", "S3"):
                await add_store(conn, store)
        yield domain


def _item(name: str, price: int = 1999) -> CatalogueIn:
    return CatalogueIn(name=name, price=price, currency="CNY", category="socks")


async def _member(dom: Domain, member_id: str, home: str | None, **extra: str) -> None:
    async with begin_write(dom.engine) as conn:
        body = MemberIn(name=f"Name {member_id}", consent=True, home_store=home, **extra)
        await put_member(conn, dom.crypt, member_id, body, NOW)


async def test_member_slice_is_home_store_and_recent_buyers_only(dom: Domain) -> None:
    await _member(dom, "M1", "S1", phone="+86 138 0013 8000")
    async with begin_write(dom.engine) as conn:
        await add_sale(conn, "S2", "M1", 5000, NOW - timedelta(days=10))
    expected = {
        "id": "M1",
        "name": "Name M1",
        "phone": "+8613800138000",
        "consent": True,
        "home_store": "S1",
        "associate_id": None,
        "tags": [],
        "segments": [],
    }
    assert await replica(dom, "S1") == {("member", "M1"): expected}
    assert await replica(dom, "S2") == {("member", "M1"): expected}
    assert await replica(dom, "S3") == {}
    assert (await feed(dom, "S3")).changes == []


async def test_a_link_older_than_a_year_leaves_the_slice(dom: Domain) -> None:
    await _member(dom, "M1", "S1")
    async with begin_write(dom.engine) as conn:
        await add_sale(conn, "S2", "M1", 5000, NOW - timedelta(days=10))
    cursor = (await feed(dom, "S2")).cursor
    later = NOW + timedelta(days=356)
    # Read before the hourly sweep ran: already out of the slice.
    assert await replica(dom, "S2", later) == {}
    async with begin_write(dom.engine) as conn:
        assert await expire_member_links(conn, later) == 1
    page = await feed(dom, "S2", cursor, now=later)
    assert [(c.id, c.data) for c in page.changes] == [("M1", None)]
    assert ("member", "M1") in await replica(dom, "S1", later)  # home store keeps it
    # Buying again brings it back.
    async with begin_write(dom.engine) as conn:
        await add_sale(conn, "S2", "M1", 5000, later)
    page = await feed(dom, "S2", page.cursor, now=later)
    assert [c.id for c in page.changes if c.data is not None] == ["M1"]


async def test_a_sale_of_a_member_the_store_already_holds_records_nothing(dom: Domain) -> None:
    await _member(dom, "M1", "S1")
    async with begin_write(dom.engine) as conn:
        await add_sale(conn, "S2", "M1", 5000, NOW - timedelta(days=10))
    async with dom.engine.connect() as conn:
        rows = await conn.scalar(select(func.count()).select_from(changes))
    async with begin_write(dom.engine) as conn:
        await link_member_to_store(conn, "M1", "S2", NOW)
        await link_member_to_store(conn, "M1", "S1", NOW)  # its home store
        await link_member_to_store(conn, "M1", "S2", NOW - timedelta(days=30))  # out of order
    async with dom.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(changes)) == rows


async def test_a_sale_before_the_member_exists_links_it_when_created(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        await add_sale(conn, "S2", "M7", 5000, NOW - timedelta(days=1))
    assert await replica(dom, "S2") == {}
    await _member(dom, "M7", "S1")
    assert set(await replica(dom, "S2")) == {("member", "M7")}


async def test_catalogue_goes_everywhere_and_staff_only_home(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        await put_catalogue(conn, "SOCK-M", _item("Merino socks"), NOW)
        await put_staff(conn, "S1", "A07", StaffIn(name="Wang Fang"), NOW)
    for store in ("S1", "S2"):
        held = await replica(dom, store)
        assert held["catalogue", "SOCK-M"] == {
            "sku": "SOCK-M",
            "gtin": None,
            "name": "Merino socks",
            "price": 1999,
            "currency": "CNY",
            "category": "socks",
        }
    assert (await replica(dom, "S1"))["staff", "A07"] == {
        "id": "A07",
        "store_id": "S1",
        "name": "Wang Fang",
        "active": True,
    }
    assert ("staff", "A07") not in await replica(dom, "S2")


async def test_paging_walks_every_change_once_in_cursor_order(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        for i in range(23):
            await put_catalogue(conn, f"SKU-{i:02d}", _item(f"Item {i}"), NOW)
    for i in range(6):
        await _member(dom, f"M{i}", "S1" if i % 2 else "S2")
    seen: list[str] = []
    cursors: list[int] = []
    since = 0
    while True:
        page = await feed(dom, "S1", since, limit=5)
        assert len(page.changes) <= 5
        seen += [c.id for c in page.changes]
        cursors += [c.cursor for c in page.changes]
        assert page.cursor == (page.changes[-1].cursor if page.changes else since)
        since = page.cursor
        if not page.more:
            break
    assert cursors == sorted(set(cursors))
    assert seen == [f"SKU-{i:02d}" for i in range(23)] + ["M1", "M3", "M5"]
    empty = await feed(dom, "S1", since)
    assert (empty.changes, empty.more, empty.cursor) == ([], False, since)


async def test_a_newer_change_replaces_the_older_row_with_a_higher_cursor(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        await put_catalogue(conn, "A", _item("a"), NOW)
    first = await feed(dom, "S1")
    # The only row is also the highest: its cursor must not be handed out again.
    async with begin_write(dom.engine) as conn:
        await put_catalogue(conn, "A", _item("a", 2999), NOW)
    second = await feed(dom, "S1", first.cursor)
    assert [(c.id, c.data and c.data["price"]) for c in second.changes] == [("A", 2999)]
    assert second.cursor > first.cursor
    async with dom.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(changes)) == 1
    # An identical PUT writes nothing.
    async with begin_write(dom.engine) as conn:
        await put_catalogue(conn, "A", _item("a", 2999), NOW)
    assert (await feed(dom, "S1", second.cursor)).changes == []


async def test_a_change_whose_row_is_gone_is_a_tombstone(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        await record_change(conn, "offer", "gone", "delete")
    page = await feed(dom, "S1")
    assert [c.as_json() for c in page.changes] == [
        {"cursor": page.cursor, "entity": "offer", "id": "gone", "op": "delete", "data": None}
    ]
    async with begin_write(dom.engine) as conn:
        with pytest.raises(ValueError, match="entity"):
            await record_change(conn, "store", "S1", "upsert")
        with pytest.raises(ValueError, match="store_id"):
            await record_change(conn, "staff", "A07", "upsert")


async def test_moving_the_home_store_tombstones_the_old_one(dom: Domain) -> None:
    await _member(dom, "M1", "S1")
    cursor = (await feed(dom, "S1")).cursor
    await _member(dom, "M1", "S2")
    page = await feed(dom, "S1", cursor)
    assert [(c.id, c.data) for c in page.changes] == [("M1", None)]
    assert (await replica(dom, "S2"))["member", "M1"]["home_store"] == "S2"
