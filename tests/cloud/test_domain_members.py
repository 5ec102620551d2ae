"""Members as HQ manages them: create/update, hand-over, and erasure everywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from cloud.catalogue import StaffIn, put_staff
from cloud.db import begin_write
from cloud.members import MemberIn, erase_member, hand_over, member_view, put_member, tag_member
from cloud.schema import (
    member_rfm,
    member_segments,
    member_stores,
    member_tag_ops,
    member_tags,
    members,
    receipt_claims,
    sales,
)
from cloud.segments import recompute_segments
from cloud.webjson import InvalidField
from tests.cloud.domain_db import NOW, Domain, add_sale, add_store, feed, open_domain, replica


@pytest.fixture
async def dom(tmp_path: Path) -> AsyncIterator[Domain]:
    async with open_domain(tmp_path) as domain:
        async with begin_write(domain.engine) as conn:
            for store in ("S1", "S2", "S3", "S4"):
                await add_store(conn, store)
            await put_staff(conn, "S1", "A07", StaffIn(name="Wang Fang"), NOW)
            await put_staff(conn, "S1", "A08", StaffIn(name="Zhao Lei"), NOW)
            await put_staff(conn, "S2", "B01", StaffIn(name="Chen Jie"), NOW)
            await put_staff(conn, "S1", "A09", StaffIn(name="Left", active=False), NOW)
        yield domain


def _body(**fields: object) -> MemberIn:
    base: dict[str, object] = {
        "name": "Li Wei",
        "phone": "+86 138 0013 8000",
        "consent": True,
        "home_store": "S1",
        "associate_id": "A07",
    }
    return MemberIn.model_validate(base | fields)


async def test_put_creates_then_updates_and_an_identical_put_is_a_no_op(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        assert await put_member(conn, dom.crypt, "M1", _body(), NOW) is True
        stored = (await conn.execute(select(members).where(members.c.id == "M1"))).one()
        assert b"138" not in stored.phone_enc
        assert stored.phone_hash == dom.crypt.phone_hash("+8613800138000")
    cursor = (await feed(dom, "S1")).cursor
    async with begin_write(dom.engine) as conn:
        assert await put_member(conn, dom.crypt, "M1", _body(phone="+8613800138000"), NOW) is False
    assert (await feed(dom, "S1", cursor)).changes == []
    async with begin_write(dom.engine) as conn:
        await put_member(conn, dom.crypt, "M1", _body(name="Li Wei 李伟", phone=None), NOW)
        found = await member_view(conn, dom.crypt, "M1")
    assert found is not None
    view, region = found
    assert (view["name"], view["phone"], region) == ("Li Wei 李伟", None, "east")
    assert [c.data and c.data["name"] for c in (await feed(dom, "S1", cursor)).changes] == [
        "Li Wei 李伟"
    ]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"home_store": "S9"}, "home_store"),
        ({"associate_id": "B01"}, "associate_id"),  # staff of another store
        ({"associate_id": "A09"}, "associate_id"),  # no longer active
    ],
)
async def test_put_refuses_references_to_nothing(
    dom: Domain, fields: dict[str, object], field: str
) -> None:
    async with begin_write(dom.engine) as conn:
        with pytest.raises(InvalidField) as caught:
            await put_member(conn, dom.crypt, "M1", _body(**fields), NOW)
    assert caught.value.field == field


async def test_member_id_must_fit_a_url_path(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        with pytest.raises(InvalidField, match="id: 1-64"):
            await put_member(conn, dom.crypt, "M 1", _body(), NOW)


async def test_hand_over_moves_the_member_to_another_associate(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        await put_member(conn, dom.crypt, "M1", _body(), NOW)
    cursor = (await feed(dom, "S1")).cursor
    async with begin_write(dom.engine) as conn:
        assert await hand_over(conn, "M1", "A08", NOW) is True
        assert await hand_over(conn, "nobody", "A08", NOW) is False
        with pytest.raises(InvalidField, match="associate_id"):
            await hand_over(conn, "M1", "B01", NOW)
    page = await feed(dom, "S1", cursor)
    assert [c.data and c.data["associate_id"] for c in page.changes] == ["A08"]


async def test_erase_removes_every_personal_field_and_tombstones_every_holder(
    dom: Domain,
) -> None:
    async with begin_write(dom.engine) as conn:
        await put_member(conn, dom.crypt, "M1", _body(), NOW)
        await put_member(conn, dom.crypt, "M2", _body(name="Other"), NOW)
        await add_sale(conn, "S2", "M1", 5000, NOW - timedelta(days=2))
        await add_sale(conn, "S2", "M1", 7000, NOW - timedelta(days=1))
        await add_sale(conn, "S3", "M1", 5000, NOW - timedelta(days=300))
        await tag_member(conn, "M1", ["vip"], [], NOW)
        await recompute_segments(conn, NOW)
        await conn.execute(
            insert(receipt_claims).values(
                store_id="S2", receipt_seq=1, member_id="M1", claimed_at=NOW
            )
        )
    before = {s: (await feed(dom, s)).cursor for s in ("S1", "S2", "S3", "S4")}
    async with dom.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(member_rfm)) == 1
    async with begin_write(dom.engine) as conn:
        assert await erase_member(conn, "M1") is True
        assert await erase_member(conn, "M1") is False
    for store in ("S1", "S2", "S3"):
        page = await feed(dom, store, before[store])
        assert [c.as_json()["op"] for c in page.changes if c.id == "M1"] == ["delete"], store
        assert ("member", "M1") not in await replica(dom, store)
    assert (await feed(dom, "S4", before["S4"])).changes == []
    async with dom.engine.connect() as conn:
        for table in (members, member_tags, member_tag_ops, member_segments, member_rfm):
            key = table.c.id if table is members else table.c.member_id
            assert await conn.scalar(select(func.count()).where(key == "M1")) == 0, table.name
        assert await conn.scalar(select(func.count()).where(member_stores.c.member_id == "M1")) == 0
        assert await conn.scalar(select(func.count()).select_from(receipt_claims)) == 0
        assert set(await conn.scalars(select(sales.c.member_id))) == {None}
        assert await conn.scalar(select(func.count()).select_from(sales)) == 3
        assert await conn.scalar(select(members.c.name).where(members.c.id == "M2")) == "Other"
