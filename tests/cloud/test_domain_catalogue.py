"""Catalogue, staff, segments and offers as HQ defines them, one by one and in bulk."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from cloud.catalogue import (
    ImportFailed,
    OfferIn,
    Written,
    import_ndjson,
    put_offer,
    put_segment,
)
from cloud.db import begin_write
from cloud.schema import catalogue, members, staff
from cloud.segments import SegmentIn
from cloud.webjson import InvalidField
from tests.cloud.domain_db import NOW, Domain, add_store, open_domain, replica


@pytest.fixture
async def dom(tmp_path: Path) -> AsyncIterator[Domain]:
    async with open_domain(tmp_path) as domain:
        async with begin_write(domain.engine) as conn:
            await add_store(conn, "S1")
            for segment_id, high_value in (("champions", True), ("lapsed", False)):
                body = SegmentIn(
                    name=segment_id, kind="rfm", rule={"cells": ["5**"]}, high_value=high_value
                )
                await put_segment(conn, segment_id, body, NOW)
        yield domain


def _offer(segments: list[str], clearance: bool, **extra: object) -> OfferIn:
    return OfferIn.model_validate(
        {"text": "20% off", "segments": segments, "clearance": clearance} | extra
    )


async def test_offers_carry_their_flags_to_every_store(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        assert await put_offer(conn, "O1", _offer(["lapsed"], True), NOW) is Written.CREATED
        assert await put_offer(conn, "O2", _offer([], False, priority=5), NOW) is Written.CREATED
        assert await put_offer(conn, "O2", _offer([], False, priority=5), NOW) is Written.UNCHANGED
    held = await replica(dom, "S1")
    assert held["offer", "O1"] == {
        "id": "O1",
        "text": "20% off",
        "segments": ["lapsed"],
        "clearance": True,
        "priority": 0,
        "active": True,
    }
    assert held["segment", "champions"]["high_value"] is True


async def test_a_clearance_offer_never_targets_a_high_value_segment(dom: Domain) -> None:
    async with begin_write(dom.engine) as conn:
        with pytest.raises(InvalidField) as caught:
            await put_offer(conn, "O1", _offer(["lapsed", "champions"], True), NOW)
        assert caught.value.field == "segments[1]"
        with pytest.raises(InvalidField, match=r"segments\[0\]: no segment 'nope'"):
            await put_offer(conn, "O1", _offer(["nope"], False), NOW)
        await put_offer(conn, "O2", _offer(["lapsed"], True), NOW)
        # Nor may a segment targeted by an active clearance offer become high-value.
        high = SegmentIn(name="lapsed", kind="rfm", rule={"cells": ["1**"]}, high_value=True)
        with pytest.raises(InvalidField, match="high_value: active clearance offer 'O2'"):
            await put_segment(conn, "lapsed", high, NOW)
        await put_offer(conn, "O2", _offer(["lapsed"], True, active=False), NOW)
        assert await put_segment(conn, "lapsed", high, NOW) is Written.UPDATED


def test_bodies_are_strict_and_name_the_field() -> None:
    with pytest.raises(ValidationError) as caught:
        OfferIn.model_validate({"text": "x", "clearance": "yes", "colour": "red"})
    assert {e["loc"] for e in caught.value.errors()} == {("clearance",), ("colour",)}


async def test_import_ndjson_loads_every_kind_in_order(dom: Domain) -> None:
    files: dict[str, list[dict[str, object]]] = {
        "catalogue": [
            {"sku": "SOCK-M", "name": "Merino socks", "price": 5000, "currency": "CNY",
             "category": "socks", "gtin": "06901234567892"},
        ],
        "staff": [{"store_id": "S1", "id": "A07", "name": "Wang Fang"}],
        "segments": [{"id": "vip", "name": "VIP", "kind": "tags", "rule": {"any": ["vip"]}}],
        "offers": [{"id": "O1", "text": "New season", "segments": ["vip"], "clearance": False}],
        "members": [
            {"id": "M1", "name": "Li Wei", "phone": "138 0013 8000", "consent": True,
             "home_store": "S1", "associate_id": "A07"},
        ],
    }  # fmt: skip
    async with begin_write(dom.engine) as conn:
        for entity, records in files.items():
            lines = [json.dumps(r) for r in records] + ["", "  "]
            assert await import_ndjson(conn, entity, lines, dom.crypt, NOW) == len(records)
    held = await replica(dom, "S1")
    assert held["member", "M1"]["phone"] == "13800138000"
    assert held["staff", "A07"]["name"] == "Wang Fang"
    assert held["offer", "O1"]["segments"] == ["vip"]
    assert held["catalogue", "SOCK-M"]["gtin"] == "06901234567892"


@pytest.mark.parametrize(
    ("entity", "lines", "message"),
    [
        ("catalogue", ['{"sku": "A", "name": "a", "price": 1, "currency": "CNY"}'], "category"),
        ("catalogue", ['{"name": "a"}'], "line 1: sku: missing"),
        ("staff", ['{"store_id": "S9", "id": "A1", "name": "x"}'], "store_id: no store 'S9'"),
        ("members", ["", '{"id": "M1", "name": "x", "consent": 1}'], "line 2: consent"),
        ("members", ['{"id": "M1", "name": "x", "consent": true, "phone": "abc"}'], "phone"),
        ("offers", ["{not json"], "line 1: not JSON"),
        ("stores", [], "unknown entity"),
    ],
)
async def test_import_errors_name_line_and_field(
    dom: Domain, entity: str, lines: list[str], message: str
) -> None:
    async with begin_write(dom.engine) as conn:
        with pytest.raises(ImportFailed, match=message):
            await import_ndjson(conn, entity, lines, dom.crypt, NOW)


async def test_a_failed_import_leaves_nothing_behind(dom: Domain) -> None:
    good = json.dumps({"sku": "A", "name": "a", "price": 1, "currency": "CNY", "category": "c"})
    with pytest.raises(ImportFailed, match="line 2"):
        async with begin_write(dom.engine) as conn:
            await import_ndjson(conn, "catalogue", [good, "[]"], dom.crypt, NOW)
    async with dom.engine.connect() as conn:
        for table in (catalogue, staff, members):
            assert await conn.scalar(select(func.count()).select_from(table)) == 0
