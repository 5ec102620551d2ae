"""Upload: the backlog reaches the cloud once; answers and marks commit together; refusals are
set aside with their reason and never sent again."""

import asyncio
import contextlib
import dataclasses
import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.eventid import EventIdGenerator, format_event_id
from agent.storekey import load_or_create_store_key
from agent.sync.cli import main as sync_main
from agent.sync.client import CloudClient, CloudUnavailable, EpochChanged
from agent.sync.epoch import EpochKeeper
from agent.sync.settings import SyncSettings
from agent.sync.state import read_status
from agent.sync.upload import BodyWriter, Uploader
from tests.faultproxy import Fault, FaultProxy
from tests.sync.conftest import FAST, Cloud, Store, sale_payload


@contextlib.asynccontextmanager
async def uploader(
    store: Store, url: str | None = None, settings: SyncSettings = FAST
) -> AsyncIterator[Uploader]:
    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    base = url or await store.value("SELECT value FROM sync_state WHERE key = 'cloud_url'")
    async with CloudClient(base, store.config.store.id, key, timeout_s=5) as client:
        epochs = EpochKeeper(store.db, client)
        yield Uploader(store.db, client, epochs, store.config.store.id, settings)


def test_body_is_one_envelope_per_row_in_order() -> None:
    ids = EventIdGenerator().new_ids(1200)
    rows = [
        (seq, ids[seq - 1], "sale", 1, 1767225600123 + seq, b'{"n": %d}' % seq)
        for seq in range(1, 1201)
    ]
    writer = BodyWriter("S001", 1)
    writer.add(rows[:500])
    writer.add([])
    writer.add(rows[500:])
    body = json.loads(gzip.decompress(writer.finish()))
    assert [e["seq"] for e in body["events"]] == list(range(1, 1201))
    first = body["events"][0]
    assert first == {
        "id": format_event_id(ids[0]),
        "store_id": "S001",
        "seq": 1,
        "kind": "sale",
        "v": 1,
        "at": "2026-01-01T00:00:00.124Z",
        "payload": {"n": 1},
    }
    assert writer.seqs[format_event_id(ids[-1])] == 1200
    assert writer.last_seq == 1200


async def test_backlog_is_stored_once_and_marked_sent(store: Store, cloud: Cloud) -> None:
    await store.add_sales(11_000)
    async with uploader(store) as up:
        assert await up.drain() == 11_000
        assert await up.drain() == 0
    assert await store.unsent() == 0
    assert await store.value("SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0
    assert await cloud.scalar("SELECT count(*) FROM events") == 11_000
    assert await cloud.scalar("SELECT count(*) FROM sales") == 11_000
    assert await store.value("SELECT value FROM sync_state WHERE key = 'last_success_at'")


async def test_a_batch_whose_answer_was_lost_is_sent_again_and_stored_once(
    store: Store, cloud: Cloud
) -> None:
    await store.add_sales(300)
    port = int(cloud.url.rsplit(":", 1)[1])
    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    async with FaultProxy(port) as proxy:
        proxy.policy = lambda n: Fault.DROP_AFTER_COMMIT if n == 0 else Fault.PASS
        async with CloudClient(f"http://127.0.0.1:{proxy.port}", "S001", key) as client:
            epochs = EpochKeeper(store.db, client)
            # Confirmed a moment ago: the first connection carries the batch, not a check.
            epochs.confirm()
            up = Uploader(store.db, client, epochs, "S001", FAST)
            with pytest.raises(CloudUnavailable):
                await up.drain()
            assert await cloud.scalar("SELECT count(*) FROM events") == 300
            assert await store.unsent() == 300
            assert await up.drain() == 300
    assert await store.unsent() == 0
    assert await cloud.scalar("SELECT count(*) FROM events") == 300
    assert await cloud.scalar("SELECT count(DISTINCT event_id) FROM events") == 300


async def test_rejected_events_are_set_aside_with_the_reason(
    store: Store, cloud: Cloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await store.add_sales(3)
    broken = sale_payload(4)
    del broken["currency"]
    await store.add_event("sale", broken)
    await store.add_event("bogus.kind", {"x": 1})
    await store.add_sales(2, first=5)
    async with uploader(store) as up:
        assert await up.drain() == 5
        # Set aside, so never sent again.
        assert await up.drain() == 0
    assert await store.unsent() == 0
    refused = await store.rows(
        "SELECT seq, kind, rejected_reason FROM outbox WHERE rejected_at IS NOT NULL ORDER BY seq"
    )
    assert [(seq, kind) for seq, kind, _ in refused] == [(4, "sale"), (5, "bogus.kind")]
    assert refused[0][2].startswith("payload.currency: missing")
    assert refused[1][2].startswith("kind: unknown kind/version 'bogus.kind'")
    assert await cloud.scalar("SELECT count(*) FROM events") == 5

    status = await read_status(store.db.reader)
    assert (status.backlog, status.rejected) == (0, 2)
    assert [e.seq for e in status.rejected_events] == [5, 4]
    config = tmp_path / "agent.toml"
    await asyncio.to_thread(
        config.write_text,
        f'[store]\nid = "S001"\ndata_dir = "{store.config.store.data_dir}"\n'
        f'[api]\nkey = "pos-key-123"\n[cloud]\nurl = "{cloud.url}"\n',
    )
    assert await asyncio.to_thread(sync_main, ["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert "rejected by the cloud: 2 events set aside" in text
    assert "payload.currency: missing" in text
    assert await asyncio.to_thread(sync_main, ["status", "--config", str(config), "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["rejected"] == 2
    assert as_json["rejected_events"][1]["reason"].startswith("payload.currency")


async def test_an_event_too_big_for_any_batch_is_set_aside_locally(
    store: Store, cloud: Cloud
) -> None:
    await store.add_sales(2)
    huge = sale_payload(3)
    huge["lines"] = [{**huge["lines"][0], "name": "x" * 200} for _ in range(30)]
    await store.add_event("sale", huge)
    await store.add_sales(2, first=4)
    async with uploader(store, settings=dataclasses.replace(FAST, batch_bytes=4000)) as up:
        assert await up.drain() == 4
    reason = await store.value("SELECT rejected_reason FROM outbox WHERE seq = 3")
    assert reason.startswith("event: ")
    assert "a batch holds at most 4000" in reason
    assert await store.unsent() == 0


async def test_small_byte_budget_splits_batches(store: Store, cloud: Cloud) -> None:
    await store.add_sales(40)
    settings = dataclasses.replace(FAST, batch_bytes=6000, batch_events=5000)
    async with uploader(store, settings=settings) as up:
        assert await up.drain() == 40
    assert await cloud.scalar("SELECT count(*) FROM events") == 40


async def test_an_answer_from_another_epoch_marks_nothing(store: Store, cloud: Cloud) -> None:
    await store.add_sales(10)
    async with store.db.write() as conn:
        await conn.execute("UPDATE sync_state SET value = 'old' WHERE key = 'epoch'")
    async with uploader(store) as up:
        with pytest.raises(EpochChanged):
            await up.drain()
        assert await store.unsent() == 10
        key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
        async with CloudClient(cloud.url, "S001", key) as client:
            assert await EpochKeeper(store.db, client).resync()
        assert await up.drain() == 10
    assert await cloud.scalar("SELECT count(*) FROM events") == 10
