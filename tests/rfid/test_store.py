"""EPC → product through the replica, raw-read sums and their retention, EPCs on sale lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.db import Database, DatabaseError, Durability, StorageFull
from agent.rfid.products import ProductLookup, gtin_of
from agent.rfid.rawreads import RawReadLog, prune_reads
from agent.sale import InvalidSale, parse_sale
from drivers.rfid.reads import TagRead
from drivers.rfid.sgtin import encode_sgtin96
from tests.helpers import make_sale
from tests.rfid.streams import DRESS, DRESS_GTIN, GIAI, JACKET, JACKET_GTIN, seed_catalogue


async def test_epc_to_product_follows_the_replica(tmp_path: Path) -> None:
    async with Database(tmp_path / "agent.db") as db:
        lookup = ProductLookup(db.reader)
        before = await lookup.resolve(JACKET)
        assert (before.epc, before.gtin, before.sku) == (JACKET.hex().upper(), JACKET_GTIN, None)
        await seed_catalogue(db)
        jacket = await lookup.resolve(JACKET)
        assert (jacket.gtin, jacket.sku) == (JACKET_GTIN, "JKT-RED-M")
        # The replica renames the SKU (INSERT OR REPLACE, as the sync daemon writes).
        async with db.write(Durability.NORMAL) as conn:
            await conn.execute("DELETE FROM catalogue WHERE sku = 'DRS-BLU-S'")
            await conn.execute(
                "INSERT OR REPLACE INTO catalogue VALUES ('DRS-BLU-M', ?, 'Dress', 1, 'CNY', 'x')",
                (DRESS_GTIN[1:],),  # stored as a GTIN-13
            )
        dress = await lookup.resolve(DRESS)
        assert (dress.gtin, dress.sku) == (DRESS_GTIN, "DRS-BLU-M")
        other = await lookup.resolve(GIAI)
        assert (other.epc, other.gtin, other.sku) == ("340000000000000000001234", None, None)


def test_gtin_of_non_sgtin_or_invalid_partition() -> None:
    assert gtin_of(bytes.fromhex("E2801160600002086E4D1234")) is None  # a TID-like EPC
    bad_partition = bytearray(JACKET)
    bad_partition[1] |= 0b00011100  # partition 7 does not exist
    assert gtin_of(bytes(bad_partition)) is None
    assert gtin_of(encode_sgtin96("4012345123456", 7, company_prefix_length=7)) == (
        "04012345123456"
    )


async def test_raw_reads_summed_per_second_and_pruned(tmp_path: Path) -> None:
    log = RawReadLog()
    base = 1_800_000_000 * 1_000_000
    reads = [TagRead("a", 1, JACKET, -50.0 - i % 3, base + i * 100_000, 2) for i in range(25)]
    log.add("a", reads[:12], 0)
    old = [TagRead("a", 2, DRESS, -60.0, base - 9 * 86_400_000_000, 1)]
    async with Database(tmp_path / "agent.db") as db:
        assert await log.flush(db) == 12
        log.add("a", reads[12:] + old, 0)  # second 1 straddles the two flushes
        assert await log.flush(db) == 14
        rows = await db.reader.execute_fetchall(
            "SELECT second, antenna, epc, reads, seen, rssi_max FROM rfid_reads ORDER BY second"
        )
        assert [tuple(r) for r in rows] == [
            (base // 1_000_000 - 9 * 86_400, 2, DRESS.hex().upper(), 1, 1, -60.0),
            (base // 1_000_000, 1, JACKET.hex().upper(), 10, 20, -50.0),
            (base // 1_000_000 + 1, 1, JACKET.hex().upper(), 10, 20, -50.0),
            (base // 1_000_000 + 2, 1, JACKET.hex().upper(), 5, 10, -50.0),
        ]
        assert await prune_reads(db, base // 1_000_000 - 7 * 86_400) == 1
        ((left,),) = await db.reader.execute_fetchall("SELECT sum(reads) FROM rfid_reads")
        assert left == 25
    assert (log.received, log.written) == (26, 26)


def test_sale_lines_carry_epcs() -> None:
    body = make_sale()
    body["lines"][0]["epcs"] = [JACKET.hex().lower()]
    line = parse_sale(body).model_dump(mode="json")["lines"][0]
    assert line["epcs"] == [JACKET.hex().upper()]
    # Absent means none, and the sale keeps its former shape.
    assert "epcs" not in parse_sale(make_sale()).model_dump(mode="json")["lines"][0]
    body["lines"][0]["epcs"] = [JACKET.hex(), DRESS.hex()]  # qty is 1
    with pytest.raises(InvalidSale, match=r"lines\[0\]: 2 epcs for qty 1"):
        parse_sale(body)
    body["lines"][0]["epcs"] = ["ABC"]
    with pytest.raises(InvalidSale, match=r"lines\[0\]\.epcs\[0\]"):
        parse_sale(body)


async def test_raw_reads_lost_to_a_database_error_are_counted(tmp_path: Path) -> None:
    log = RawReadLog()
    log.add("a", [TagRead("a", 1, JACKET, -50.0, 1_800_000_000 * 1_000_000, 1)] * 3, 0)
    db = Database(tmp_path / "agent.db")
    async with db:
        pass  # opened and migrated, now closed: the write fails, not with StorageFull
    with pytest.raises(DatabaseError) as failed:
        await log.flush(db)
    assert not isinstance(failed.value, StorageFull)
    assert (log.received, log.written, log.dropped) == (3, 0, 3)
