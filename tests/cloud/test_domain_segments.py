"""Segments: RFM quintiles on a known dataset, rules, recompute and its schedule."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from cloud.catalogue import put_segment
from cloud.db import begin_write
from cloud.members import MemberIn, put_member, tag_member
from cloud.schema import changes, member_rfm, member_segments, meta
from cloud.segments import (
    COMPUTED_AT_KEY,
    MemberActivity,
    RfmRule,
    SegmentIn,
    SegmentScheduler,
    TagRule,
    list_segments,
    quintile_scores,
    recompute_segments,
    rfm_scores,
)
from tests.cloud.domain_db import NOW, Domain, add_sale, add_store, feed, open_domain

# member: (days since last purchase, number of sales, total of all sales)
DATASET = {
    "A": (1, 5, 50000),
    "B": (2, 4, 40000),
    "C": (2, 1, 1000),
    "D": (30, 2, 20000),
    "E": (300, 1, 1000),
}
# Worked by hand with the mid-rank rule 1 + floor(5 * (below + ties/2) / n), n = 5.
CELLS = {"A": "555", "B": "444", "C": "422", "D": "233", "E": "122"}


@pytest.fixture
async def dom(tmp_path: Path) -> AsyncIterator[Domain]:
    async with open_domain(tmp_path) as domain:
        async with begin_write(domain.engine) as conn:
            await add_store(conn, "S1")
        yield domain


def test_quintiles_of_distinct_values_and_of_ties() -> None:
    distinct = {f"m{i}": i for i in range(10)}
    assert [quintile_scores(distinct)[f"m{i}"] for i in range(10)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert set(quintile_scores({f"m{i}": 7 for i in range(9)}).values()) == {3}
    assert quintile_scores({"only": 1}) == {"only": 3}
    assert quintile_scores({}) == {}


def test_rfm_cells_of_a_known_dataset_in_any_input_order() -> None:
    rows = [
        MemberActivity(m, NOW - timedelta(days=d, hours=1), f, total)
        for m, (d, f, total) in DATASET.items()
    ]
    for seed in range(5):
        random.Random(seed).shuffle(rows)
        scores = rfm_scores(rows, NOW)
        assert {m: c.cell for m, c in scores.items()} == CELLS
    assert (scores["D"].recency_days, scores["D"].frequency, scores["D"].monetary) == (
        30,
        2,
        20000,
    )


def test_rules() -> None:
    rule = TagRule(any=["vip", "golf"], all=["consented"], none=["blocked"])
    assert rule.matches({"vip", "consented"})
    assert not rule.matches({"consented"})
    assert not rule.matches({"golf", "consented", "blocked"})
    assert TagRule(none=["blocked"]).matches(set())
    rfm = RfmRule(cells=["5**", "44*"])
    assert [rfm.matches(c) for c in ("512", "441", "435", None)] == [True, True, False, False]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"kind": "tags", "rule": {"any": [""]}}, "rule", "any[0]"),
        ({"kind": "tags", "rule": {}}, "rule", "at least one tag"),
        ({"kind": "tags", "rule": {"some": ["x"]}}, "rule", "some: unknown field"),
        ({"kind": "rfm", "rule": {"cells": ["6**"]}}, "rule", "cells[0]"),
        ({"kind": "both", "rule": {}}, "kind", "'rfm' or 'tags'"),
    ],
)
def test_segment_rules_are_validated_naming_the_field(
    body: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        SegmentIn.model_validate({"name": "x"} | body)
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert message in error["msg"]


async def _seed(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        for member, (days, count, total) in DATASET.items():
            await put_member(conn, dom.crypt, member, MemberIn(name=member, consent=True), NOW)
            for i in range(count):
                at = NOW - timedelta(days=days + i * 0.01, hours=1)
                amount = total // count + (total % count if i == 0 else 0)
                await add_sale(conn, "S1", member, amount, at)
        await put_member(conn, dom.crypt, "Z", MemberIn(name="Z", consent=True), NOW)
        await add_sale(conn, "S1", "Z", 99999, NOW - timedelta(days=400))  # outside the window
        await add_sale(conn, "S1", None, 5000, NOW - timedelta(days=1))  # anonymous
        await tag_member(conn, "C", ["vip"], [], NOW)
        bodies: dict[str, dict[str, object]] = {
            "champions": {"kind": "rfm", "rule": {"cells": ["5**", "44*"]}, "high_value": True},
            "vip": {"kind": "tags", "rule": {"any": ["vip"]}},
            "not-vip": {"kind": "tags", "rule": {"none": ["vip"]}},
        }
        for segment_id, body in bodies.items():
            segment = SegmentIn.model_validate({"name": segment_id} | body)
            await put_segment(conn, segment_id, segment, NOW)


async def test_recompute_writes_cells_and_memberships_and_records_only_changes(
    dom: Domain,
) -> None:
    await _seed(dom)
    async with begin_write(dom.engine) as conn:
        changed = await recompute_segments(conn, NOW)
    # The segments were defined after the members and tags: every member's set changed.
    assert changed == 6
    async with dom.engine.connect() as conn:
        result = await conn.execute(select(member_rfm.c.member_id, member_rfm.c.cell))
        cells = dict(result.all())
        rows = await conn.execute(select(member_segments).order_by(member_segments.c.member_id))
        memberships = {(m, s) for m, s in rows}
        count = await conn.scalar(select(func.count()).select_from(changes))
        listed = await list_segments(conn)
    assert cells == CELLS
    assert memberships == {
        ("A", "champions"),
        ("B", "champions"),
        ("C", "vip"),
        ("A", "not-vip"),
        ("B", "not-vip"),
        ("D", "not-vip"),
        ("E", "not-vip"),
        ("Z", "not-vip"),
    }
    assert {s["id"]: s["members"] for s in listed["segments"]} == {
        "champions": 2,
        "vip": 1,
        "not-vip": 5,
    }
    assert listed["computed_at"] == NOW.isoformat()
    async with begin_write(dom.engine) as conn:
        assert await recompute_segments(conn, NOW) == 0
    async with dom.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(changes)) == count


async def test_high_value_flag_and_segments_reach_the_store(dom: Domain) -> None:
    await _seed(dom)
    async with begin_write(dom.engine) as conn:
        await put_member(
            conn, dom.crypt, "A", MemberIn(name="A", consent=True, home_store="S1"), NOW
        )
        await recompute_segments(conn, NOW)
    page = await feed(dom, "S1")
    data = {(c.entity, c.id): c.data for c in page.changes}
    assert data["segment", "champions"] == {
        "id": "champions",
        "name": "champions",
        "kind": "rfm",
        "high_value": True,
    }
    assert data["member", "A"] is not None
    assert data["member", "A"]["segments"] == ["champions", "not-vip"]


async def test_a_tag_change_moves_tag_segments_at_once(dom: Domain) -> None:
    await _seed(dom)
    async with begin_write(dom.engine) as conn:
        await recompute_segments(conn, NOW)
        await tag_member(conn, "E", ["vip"], [], NOW)
        rows = await conn.scalars(
            select(member_segments.c.segment_id).where(member_segments.c.member_id == "E")
        )
        assert set(rows) == {"vip"}


async def test_scheduler_recomputes_on_its_interval(dom: Domain) -> None:
    await _seed(dom)
    async with SegmentScheduler(dom.engine, timedelta(seconds=0.2)):
        for _ in range(100):
            async with dom.engine.connect() as conn:
                done = await conn.scalar(select(meta.c.value).where(meta.c.key == COMPUTED_AT_KEY))
            if done is not None:
                break
            await asyncio.sleep(0.05)
    assert done is not None
    async with dom.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(member_rfm)) == 5
    with pytest.raises(ValueError, match="positive"):
        SegmentScheduler(dom.engine, timedelta(0))
