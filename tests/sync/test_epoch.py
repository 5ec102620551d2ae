"""A new cloud epoch (a recreated or restored cloud database): the replica is pulled afresh and
every event the cloud no longer holds is sent again."""

import asyncio
from pathlib import Path

import pytest

from agent.enroll import enroll
from agent.storekey import load_or_create_store_key
from agent.sync.client import CloudClient, EpochChanged
from agent.sync.epoch import EpochKeeper
from agent.sync.upload import BodyWriter, Uploader
from tests.sync.conftest import FAST, Cloud, Store, daemon, eventually, running_cloud


async def catalogue_item(cloud: Cloud, sku: str) -> None:
    body = {"name": sku, "price": 100, "currency": "CNY", "category": "misc"}
    await cloud.hq_ok("PUT", f"/v1/catalogue/{sku}", body)


async def synced(store: Store, cloud: Cloud, events: int, sku: str) -> bool:
    skus = [row[0] for row in await store.rows("SELECT sku FROM catalogue")]
    stored = await cloud.scalar("SELECT count(*) FROM events")
    return await store.unsent() == 0 and stored == events and skus == [sku]


async def test_a_fresh_cloud_database_gets_everything_again(
    tmp_path: Path, store: Store, cloud: Cloud
) -> None:
    await catalogue_item(cloud, "OLD-1")
    await store.add_sales(50)
    async with daemon(store.config):
        await eventually(lambda: synced(store, cloud, 50, "OLD-1"))

    async with running_cloud(tmp_path / "restored") as fresh:
        assert fresh.epoch != cloud.epoch
        await catalogue_item(fresh, "NEW-1")
        await enroll(store.config, fresh.url, await fresh.token())
        await store.add_sales(10, first=51)
        async with daemon(store.config):
            await eventually(lambda: synced(store, fresh, 60, "NEW-1"))
        assert await fresh.scalar("SELECT count(DISTINCT event_id) FROM events") == 60
        epoch = await store.value("SELECT value FROM sync_state WHERE key = 'epoch'")
        assert epoch == fresh.epoch


async def test_only_events_after_the_clouds_last_seq_are_unmarked(
    tmp_path: Path, store: Store, cloud: Cloud
) -> None:
    await store.add_sales(50)
    await store.add_event("bogus.kind", {})
    async with daemon(store.config):
        await eventually(lambda: synced_events(store, cloud, 50))
    assert await store.value("SELECT count(*) FROM outbox WHERE rejected_at IS NOT NULL") == 1

    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    async with running_cloud(tmp_path / "restored") as restored:
        await enroll(store.config, restored.url, await restored.token())
        # The restored database holds the store's first 20 events, as a backup would.
        writer = BodyWriter("S001", 1)
        writer.add(
            await store.rows(
                "SELECT seq, event_id, kind, schema_version, occurred_at_ms, payload"
                " FROM outbox WHERE seq <= 20 ORDER BY seq"
            )
        )
        async with CloudClient(restored.url, "S001", key) as client:
            await client.post_events(writer.finish())
            assert await EpochKeeper(store.db, client).resync()
            assert not await EpochKeeper(store.db, client).resync()
    unsent = await store.rows("SELECT seq FROM outbox WHERE sent_at IS NULL ORDER BY seq")
    # Seq 51 was rejected: it stays set aside, not sent again.
    assert [seq for (seq,) in unsent] == [*range(21, 52)]
    assert await store.unsent() == 30
    assert await store.value("SELECT value FROM sync_state WHERE key = 'cursor'") == "0"


async def synced_events(store: Store, cloud: Cloud, events: int) -> bool:
    return await store.unsent() == 0 and await cloud.scalar("SELECT count(*) FROM events") == events


async def test_uploads_that_reached_a_new_database_first_send_everything_again(
    tmp_path: Path, store: Store, cloud: Cloud
) -> None:
    await store.add_sales(50)
    async with daemon(store.config):
        await eventually(lambda: synced_events(store, cloud, 50))

    key = await asyncio.to_thread(load_or_create_store_key, store.config.store.data_dir)
    async with running_cloud(tmp_path / "restored") as restored:
        await enroll(store.config, restored.url, await restored.token())
        await store.add_sales(10, first=51)
        async with CloudClient(restored.url, "S001", key) as client:
            epochs = EpochKeeper(store.db, client)
            # The old epoch looked confirmed: the new backlog goes out before any check.
            epochs.confirm()
            uploader = Uploader(store.db, client, epochs, "S001", FAST)
            with pytest.raises(EpochChanged):
                await uploader.drain()
            # The restored database now holds seq 51-60: its max_seq says nothing of 1-50.
            assert await restored.scalar("SELECT max(seq) FROM events") == 60
            assert await epochs.resync()
            assert await store.unsent() == 60
            assert await uploader.drain() == 60
        assert await restored.scalar("SELECT count(*) FROM events") == 60
