"""Member tags: last-writer-wins merge that converges whatever the order, and its fan-out."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cloud.db import begin_write
from cloud.members import MemberIn, put_member, tag_member
from cloud.schema import member_tag_ops
from cloud.tags import TagOp, apply_tag_event, apply_tag_ops, present_tags, winner
from tests.cloud.domain_db import NOW, Domain, add_sale, add_store, feed, open_domain, replica

T = NOW - timedelta(hours=1)
Op = tuple[str, str, str, datetime]  # op_id, op, tag, at


@pytest.fixture
async def dom(tmp_path: Path) -> AsyncIterator[Domain]:
    async with open_domain(tmp_path) as domain:
        yield domain


def _event(member: str, *ops: Op) -> dict[str, Any]:
    return {
        "member_id": member,
        "staff_id": "A07",
        "ops": [
            {"op_id": i, "op": op, "tag": tag, "at": at.isoformat().replace("+00:00", "Z")}
            for i, op, tag, at in ops
        ],
    }


def _events(prefix: str) -> list[tuple[str | None, list[Op]]]:
    """Events from two stores and HQ (store None), with equal timestamps across sources."""
    return [
        ("S1", [(f"{prefix}a-s1", "add", "vip", T), (f"{prefix}x1", "add", "sale", T)]),
        ("S2", [(f"{prefix}b-s2", "remove", "vip", T), (f"{prefix}x2", "remove", "sale", T)]),
        (None, [(f"{prefix}c-hq", "add", "vip", T)]),
        # One event carrying a later add before an earlier remove of the same tag.
        (
            "S1",
            [
                (f"{prefix}g2", "add", "golf", T + timedelta(seconds=1)),
                (f"{prefix}g1", "remove", "golf", T),
            ],
        ),
        # A re-delivery of the second event.
        ("S2", [(f"{prefix}b-s2", "remove", "vip", T), (f"{prefix}x2", "remove", "sale", T)]),
    ]


async def _apply(conn: AsyncConnection, member: str, store: str | None, ops: list[Op]) -> None:
    if store is not None:
        await apply_tag_event(conn, store, _event(member, *ops))
        return
    # HQ's endpoint makes random op ids; fixed ones here pin the tie-break.
    await apply_tag_ops(conn, [TagOp(i, member, tag, op, at) for i, op, tag, at in ops])  # type: ignore[arg-type]


def test_winner_is_the_later_operation_then_the_greater_op_id() -> None:
    early = TagOp("z", "M1", "vip", "add", T)
    late = TagOp("a", "M1", "vip", "remove", T + timedelta(microseconds=1))
    assert winner(early, late) is late
    assert winner(late, early) is late
    tie_a = TagOp("op-a", "M1", "vip", "remove", T, "S1")
    tie_b = TagOp("op-b", "M1", "vip", "add", T)
    assert winner(tie_a, tie_b) is tie_b
    assert winner(tie_b, tie_a) is tie_b


def test_pure_merge_converges_under_every_permutation() -> None:
    ops = [
        TagOp(i, "M1", tag, op, at, store)  # type: ignore[arg-type]
        for store, event in _events("")
        for i, op, tag, at in event
    ]
    results = set()
    for order in itertools.permutations(ops):
        decided: dict[str, TagOp] = {}
        for op in order:
            decided[op.tag] = winner(decided[op.tag], op) if op.tag in decided else op
        results.add(frozenset((tag, op.op) for tag, op in decided.items()))
    assert results == {frozenset({("vip", "add"), ("sale", "remove"), ("golf", "add")})}


async def test_database_merge_converges_under_every_event_order(dom: Domain) -> None:
    outcomes = set()
    for n, order in enumerate(itertools.permutations(range(5))):
        member = f"M{n:03d}"
        events = _events(f"p{n:03d}-")
        for index in order:
            async with begin_write(dom.engine) as conn:
                await _apply(conn, member, *events[index])
        async with dom.engine.connect() as conn:
            outcomes.add((await present_tags(conn, [member])).get(member, frozenset()))
            kept = await conn.scalar(
                select(func.count()).where(member_tag_ops.c.member_id == member)
            )
        assert kept == 7  # the re-delivered event added nothing
    # c-hq > b-s2 > a-s1 at equal times; x2 > x1; g2 is later than g1.
    assert outcomes == {frozenset({"vip", "golf"})}


async def test_invalid_payload_names_the_field_and_writes_nothing(dom: Domain) -> None:
    bad = _event("M1", ("o1", "add", "vip", T))
    bad["ops"][0]["op"] = "toggle"
    async with begin_write(dom.engine) as conn:
        with pytest.raises(ValueError, match=r"payload\.ops\[0\]\.op"):
            await apply_tag_event(conn, "S1", bad)
        assert await conn.scalar(select(func.count()).select_from(member_tag_ops)) == 0
    naive = _event("M1", ("o1", "add", "vip", T))
    naive["ops"][0]["at"] = "2026-11-28T10:00:00"
    async with begin_write(dom.engine) as conn:
        with pytest.raises(ValueError, match=r"payload\.ops\[0\]\.at"):
            await apply_tag_event(conn, "S1", naive)


async def test_tags_of_an_unknown_member_wait_for_the_member(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        await add_store(conn, "S1")
        await apply_tag_event(conn, "S1", _event("M9", ("o1", "add", "runner", T)))
    assert (await feed(dom, "S1")).changes == []
    async with begin_write(dom.engine) as conn:
        body = MemberIn(name="Li Wei", consent=True, home_store="S1")
        await put_member(conn, dom.crypt, "M9", body, NOW)
    held = await replica(dom, "S1")
    assert held["member", "M9"]["tags"] == ["runner"]


async def test_a_tag_change_reaches_every_store_holding_the_member(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        for store in ("S1", "S2", "S3"):
            await add_store(conn, store)
        body = MemberIn(name="Li", consent=True, home_store="S1")
        await put_member(conn, dom.crypt, "M1", body, NOW)
        await add_sale(conn, "S2", "M1", 1000, NOW - timedelta(days=3))
    cursors = {s: (await feed(dom, s)).cursor for s in ("S1", "S2", "S3")}
    async with begin_write(dom.engine) as conn:
        await apply_tag_event(conn, "S2", _event("M1", ("o1", "add", "prefers-xl", T)))
    for store in ("S1", "S2"):
        page = await feed(dom, store, cursors[store])
        assert [(c.id, c.data and c.data["tags"]) for c in page.changes] == [("M1", ["prefers-xl"])]
    assert (await feed(dom, "S3", cursors["S3"])).changes == []
    # Re-adding a present tag changes nothing a store shows, so nothing is recorded.
    after = (await feed(dom, "S1", cursors["S1"])).cursor
    async with begin_write(dom.engine) as conn:
        await apply_tag_event(conn, "S1", _event("M1", ("o2", "add", "prefers-xl", NOW)))
    assert (await feed(dom, "S1", after)).changes == []


async def test_hq_tags_take_the_same_path(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        await add_store(conn, "S1")
        body = MemberIn(name="Li", consent=True, home_store="S1")
        await put_member(conn, dom.crypt, "M1", body, NOW)
        assert await tag_member(conn, "M1", ["vip", "golf"], [], NOW) == frozenset({"vip", "golf"})
        assert await tag_member(conn, "M1", [], ["golf"], NOW + timedelta(seconds=1)) == frozenset(
            {"vip"}
        )
        assert await tag_member(conn, "nobody", ["vip"], [], NOW) is None
    held = await replica(dom, "S1")
    assert held["member", "M1"]["tags"] == ["vip"]
