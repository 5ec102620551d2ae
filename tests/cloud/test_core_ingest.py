"""Ingest: validation reasons, exactly-once storage, sales as rows, rejections, limits."""

from __future__ import annotations

import gzip
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from sqlalchemy import DateTime, func, select
from sqlalchemy.dialects import sqlite

from cloud import appkeys, ingest
from cloud.db import utc
from cloud.ingest import Accepted, Rejected, parse_batch, validate_event
from cloud.schema import (
    events,
    member_stores,
    member_tag_ops,
    rejected_events,
    sale_lines,
    sale_payments,
    sales,
)
from tests.cloud.conftest import Cloud, StoreClient, envelope, sale_event, uuid7


def _raw(event: dict[str, Any]) -> bytes:
    return msgspec.json.encode(event)


async def _count(cloud: Cloud, table: Any, **where: Any) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    async with cloud.engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


# -- validation, without a server ----------------------------------------------------------


def test_valid_sale_event_is_accepted() -> None:
    event = sale_event("S001", 7)
    outcome = validate_event(_raw(event), "S001")
    assert isinstance(outcome, Accepted)
    assert outcome.envelope.id == event["id"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e["payload"].update(total=-1), "payload.total: Expected `int` >= 0"),
        (lambda e: e["payload"].pop("currency"), "payload.currency: missing"),
        (lambda e: e["payload"].update(extra=1), "payload.extra: unknown field"),
        (
            lambda e: e["payload"]["lines"][1].update(qty=0),
            "payload.lines[1].qty: Expected `int` >= 1",
        ),
        (lambda e: e["payload"].update(lines=[]), "payload.lines: Expected `array` of length >= 1"),
        (lambda e: e["payload"].update(occurred_at="2026-11-28T10:00:00"), "payload.occurred_at:"),
        (lambda e: e["payload"]["lines"][0].update(gtin="123\n"), "payload.lines[0].gtin:"),
        (lambda e: e.update(seq=0), "seq: Expected `int` >= 1"),
        (lambda e: e.update(id="not-a-uuid7"), "id: Expected `str` matching regex"),
        (lambda e: e.update(kind="nope"), "kind: unknown kind/version 'nope' v1"),
        (lambda e: e.update(v=2), "kind: unknown kind/version 'sale' v2"),
        (lambda e: e.update(store_id="S002"), "store_id: 'S002' is not this store (S001)"),
        (lambda e: e.pop("at"), "at: missing"),
    ],
)
def test_invalid_events_are_rejected_naming_the_field(change: Any, reason: str) -> None:
    event = sale_event("S001", 7)
    change(event)
    outcome = validate_event(_raw(event), "S001")
    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith(reason), outcome.reason


def test_rejection_without_a_usable_id_gets_a_stable_key() -> None:
    first = validate_event(b'{"seq": 1}', "S001")
    again = validate_event(b'{"seq": 1}', "S001")
    assert isinstance(first, Rejected)
    assert first.event_id is None
    assert first == again
    assert first.key.startswith("sha256:")
    assert len(first.key) <= 64


def test_member_tags_event_validates_against_its_schema() -> None:
    good = envelope(
        "S001",
        1,
        "member.tags",
        {
            "member_id": "M1",
            "ops": [{"op_id": "o1", "op": "add", "tag": "vip", "at": "2026-11-28T10:00:00Z"}],
        },
    )
    assert isinstance(validate_event(_raw(good), "S001"), Accepted)
    good["payload"]["ops"][0]["op"] = "toggle"
    bad = validate_event(_raw(good), "S001")
    assert isinstance(bad, Rejected)
    assert bad.reason.startswith("payload.ops[0].op:")


def test_batch_keeps_the_first_of_repeated_ids() -> None:
    event = sale_event("S001", 1)
    batch = parse_batch(msgspec.json.encode({"events": [event, event]}), "S001")
    assert [a.envelope.id for a in batch.accepted] == [event["id"]]


# -- over HTTP -----------------------------------------------------------------------------


@pytest.fixture
async def store(cloud: Cloud) -> StoreClient:
    return await cloud.enroll("S001")


async def test_same_batch_twice_gets_the_same_answer_and_one_row_each(
    cloud: Cloud, store: StoreClient
) -> None:
    batch = [sale_event("S001", i) for i in range(1, 6)]
    batch.append(sale_event("S001", 99) | {"kind": "nope"})
    first = await store.send_events(batch)
    again = await store.send_events(batch)
    assert first.status == again.status == 200
    assert first.json() == again.json()
    assert first.json()["stored"] == [e["id"] for e in batch[:5]]
    assert [r["id"] for r in first.json()["rejected"]] == [batch[5]["id"]]
    assert await _count(cloud, events) == 5
    assert await _count(cloud, sales) == 5
    assert await _count(cloud, sale_lines) == 10
    assert await _count(cloud, sale_payments) == 5
    assert await _count(cloud, rejected_events) == 1


async def test_overlapping_batches_store_each_event_once(cloud: Cloud, store: StoreClient) -> None:
    all_events = [sale_event("S001", i) for i in range(1, 11)]
    one = await store.send_events(all_events[:6])
    two = await store.send_events(all_events[3:])
    assert one.json()["stored"] == [e["id"] for e in all_events[:6]]
    assert two.json()["stored"] == [e["id"] for e in all_events[3:]]
    assert await _count(cloud, events) == 10
    assert await _count(cloud, sales) == 10


async def test_invalid_events_are_not_stored_and_keep_their_reason(
    cloud: Cloud, store: StoreClient
) -> None:
    good = sale_event("S001", 1)
    foreign = sale_event("S002", 2)
    broken = sale_event("S001", 3)
    broken["payload"]["total"] = "599"
    answer = (await store.send_events([good, foreign, broken])).json()
    assert answer["stored"] == [good["id"]]
    reasons = {r["id"]: r["reason"] for r in answer["rejected"]}
    assert reasons[foreign["id"]].startswith("store_id:")
    assert reasons[broken["id"]].startswith("payload.total:")
    assert await _count(cloud, events) == 1
    async with cloud.engine.connect() as conn:
        kept = dict(
            (await conn.execute(select(rejected_events.c.event_id, rejected_events.c.reason))).all()
        )
    assert kept == reasons


async def test_sale_becomes_rows_with_lines_and_payments(cloud: Cloud, store: StoreClient) -> None:
    event = sale_event("S001", 42, member="M-77")
    await store.send_events([event])
    payload = event["payload"]
    async with cloud.engine.connect() as conn:
        sale = (await conn.execute(select(sales))).one()
        lines = (await conn.execute(select(sale_lines).order_by(sale_lines.c.line_no))).all()
        payments = (await conn.execute(select(sale_payments))).all()
        link = (await conn.execute(select(member_stores))).one()
    assert sale.sale_id == payload["sale_id"]
    assert sale.event_id == event["id"]
    assert (sale.receipt_no, sale.receipt_seq, sale.total, sale.currency) == (
        "S001-000042",
        42,
        68900,
        "CNY",
    )
    assert (sale.staff_id, sale.member_id, sale.register_id) == ("A07", "M-77", "R1")
    assert utc(sale.occurred_at).isoformat(timespec="milliseconds") == payload[
        "occurred_at"
    ].replace("Z", "+00:00")
    assert [
        (li.line_no, li.gtin, li.sku, li.name, li.qty, li.unit_price, li.discount) for li in lines
    ] == [
        (0, "06901234567892", None, "Trail jacket 冲锋衣", 1, 59900, 0),
        (1, None, "SOCK-M", "Merino <socks>", 2, 5000, 1000),
    ]
    assert [(p.idx, p.method, p.amount) for p in payments] == [(0, "card", 68900)]
    assert (link.member_id, link.store_id) == ("M-77", "S001")


async def test_a_second_event_for_a_recorded_sale_adds_nothing(
    cloud: Cloud, store: StoreClient
) -> None:
    event = sale_event("S001", 1)
    copy = sale_event("S001", 2)
    copy["payload"] = dict(event["payload"], receipt_seq=2)
    answer = (await store.send_events([event, copy])).json()
    assert answer["stored"] == [event["id"], copy["id"]]
    assert await _count(cloud, sales) == 1
    assert await _count(cloud, sale_lines) == 2


async def test_member_tags_event_reaches_the_tag_log(cloud: Cloud, store: StoreClient) -> None:
    tags = envelope(
        "S001",
        1,
        "member.tags",
        {
            "member_id": "M1",
            "staff_id": "A07",
            "ops": [{"op_id": "op-1", "op": "add", "tag": "vip", "at": "2026-11-28T10:00:00Z"}],
        },
    )
    assert (await store.send_events([tags])).json()["stored"] == [tags["id"]]
    assert await _count(cloud, member_tag_ops, op_id="op-1") == 1


async def test_sync_state_reports_the_highest_seq(cloud: Cloud, store: StoreClient) -> None:
    empty = (await store.request("GET", "/v1/stores/S001/sync-state")).json()
    assert empty["max_seq"] == 0
    await store.send_events([sale_event("S001", 3), sale_event("S001", 9)])
    state = (await store.request("GET", "/v1/stores/S001/sync-state")).json()
    assert state == {"epoch": cloud.app[appkeys.EPOCH], "max_seq": 9}


async def test_decompression_bomb_is_413(store: StoreClient) -> None:
    bomb = gzip.compress(b"{" + b" " * (9 * 1024 * 1024) + b"}")
    answer = await store.request(
        "POST", "/v1/stores/S001/events", body=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert answer.status == 413
    assert len(bomb) < 64 * 1024


async def test_batch_limits(store: StoreClient) -> None:
    too_many: dict[str, list[dict[str, Any]]] = {"events": [{}] * (ingest.MAX_EVENTS + 1)}
    assert (await store.request("POST", "/v1/stores/S001/events", too_many)).status == 413
    assert (await store.request("POST", "/v1/stores/S001/events", {"nope": 1})).status == 400
    broken = gzip.compress(b'{"events": [')
    answer = await store.request(
        "POST", "/v1/stores/S001/events", body=broken, headers={"Content-Encoding": "gzip"}
    )
    assert answer.status == 400


async def test_portable_writer_stores_the_same_rows(cloud: Cloud) -> None:
    """The RETURNING path (PostgreSQL's) gives the same result on the same batch."""
    batch = parse_batch(
        msgspec.json.encode({"events": [sale_event("S001", i, member="M1") for i in range(1, 4)]}),
        "S001",
    )
    portable = ingest.PortableWriter()
    first = await ingest.store_batch(cloud.engine, "S001", batch, portable)
    again = await ingest.store_batch(cloud.engine, "S001", batch, portable)
    assert first.new_by_kind == {"sale": 3}
    assert again.new_by_kind == {}
    assert first.stored == again.stored
    if cloud.engine.dialect.name == "sqlite":
        fast = await ingest.store_batch(cloud.engine, "S001", batch, ingest.SqliteWriter())
        assert fast.new_by_kind == {}
        assert fast.stored == first.stored
    assert await _count(cloud, sales) == 3
    assert await _count(cloud, sale_lines) == 6


async def test_a_5000_event_batch(
    cloud: Cloud, store: StoreClient, capsys: pytest.CaptureFixture[str]
) -> None:
    batch = [sale_event("S001", i) for i in range(1, ingest.MAX_EVENTS + 1)]
    started = time.perf_counter()
    answer = await store.send_events(batch)
    elapsed = time.perf_counter() - started
    assert answer.status == 200
    assert len(answer.json()["stored"]) == ingest.MAX_EVENTS
    assert await _count(cloud, sale_lines) == 2 * ingest.MAX_EVENTS
    with capsys.disabled():
        rate = ingest.MAX_EVENTS / elapsed
        print(f"\n5000-event batch over HTTP: {elapsed:.3f} s, {rate:,.0f} events/s")


async def test_event_ids_are_uuid7() -> None:
    assert uuid7()[14] == "7"


async def test_a_busy_cloud_answers_503_with_retry_after(
    cloud: Cloud, store: StoreClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "SLOT_WAIT_S", 0.05)
    gate = cloud.app[ingest.INGEST_GATE]
    for _ in range(ingest.INGEST_SLOTS):
        await gate.acquire()
    try:
        answer = await store.send_events([sale_event("S001", 1)])
    finally:
        for _ in range(ingest.INGEST_SLOTS):
            gate.release()
    assert answer.status == 503
    assert answer.headers["Retry-After"] == str(ingest.RETRY_AFTER_S)
    assert await _count(cloud, events) == 0
    assert (await store.send_events([sale_event("S001", 1)])).status == 200


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 28, 10, 15, 0, 123000, tzinfo=UTC),
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_sqlite_writer_times_match_sqlalchemys_storage_format(moment: datetime) -> None:
    dialect = sqlite.dialect()
    convert = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    assert convert is not None
    assert ingest.SqliteWriter().time(moment) == convert(moment)


async def test_batches_beyond_one_insert_statement_store_every_row(
    cloud: Cloud, store: StoreClient
) -> None:
    count = ingest.ROWS_PER_INSERT + ingest.ROWS_PER_INSERT // 2
    first = [sale_event("S001", i) for i in range(1, count + 1)]
    more = [sale_event("S001", i) for i in range(count + 1, 2 * count + 1)]
    assert len((await store.send_events(first)).json()["stored"]) == count
    # Half known, half new: the new ones are told apart by rowid.
    answer = (await store.send_events(first[count // 2 :] + more)).json()
    assert len(answer["stored"]) == count - count // 2 + count
    assert await _count(cloud, events) == 2 * count
    assert await _count(cloud, sales) == 2 * count
    assert await _count(cloud, sale_lines) == 4 * count
    assert await _count(cloud, sale_payments) == 2 * count
