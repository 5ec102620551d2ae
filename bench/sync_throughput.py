"""Store → cloud sync throughput: a backlog of sale events drained to the cloud.

A store's outbox is filled with N sale events (as a long outage leaves it), then the real
``storelink-sync run`` drains it to the real ``storelink-cloud run`` on embedded SQLite, both
as processes on 127.0.0.1. The baseline, in the same run, is the cloud database's own bulk
insert of the same rows (events, sales, sale lines, payments) with ``executemany`` into the
same schema with the same settings: what the database can take with no network, signing,
compression, validation or bookkeeping on either side.

    .venv/bin/python bench/sync_throughput.py [--events 1000000]

Last line: {"metric": "sync_ratio", "value": ..., "target": ">=0.5", "drain_s": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from agent.db import Database
from agent.eventid import EventIdGenerator, format_event_id
from agent.outbox import NewEvent, Outbox, epoch_ms, utc_iso
from cloud.schema import metadata
from tests.helpers import free_port
from tests.sync_e2e.harness import Service, run_cli, wait_http_ok

STORE = "S001"


def sale_payload(i: int, at: datetime) -> dict[str, Any]:
    """A sale.v1 payload: two lines, one payment."""
    price = 10_000 + i % 5000
    return {
        "sale_id": str(uuid.UUID(int=i + 1, version=4)),
        "register_id": f"R{i % 4 + 1}",
        "staff_id": f"A{i % 9:02d}",
        "member_id": None,
        "lines": [
            {
                "gtin": None,
                "sku": f"SKU-{i % 800}",
                "epc": None,
                "name": "Trail socks",
                "qty": 1,
                "unit_price": price,
                "discount": 0,
            },
            {
                "gtin": None,
                "sku": "BAG",
                "epc": None,
                "name": "Bag",
                "qty": 1,
                "unit_price": 100,
                "discount": 100,
            },
        ],
        "payments": [{"method": "card", "amount": price}],
        "total": price,
        "currency": "CNY",
        "occurred_at": utc_iso(at),
        "receipt_no": f"{STORE}-{i + 1:06d}",
        "receipt_seq": i + 1,
        "receipt_url": f"http://127.0.0.1/r/{i}",
    }


async def fill_outbox(db_path: Path, events: int) -> None:
    """Append ``events`` sale events to the store's outbox, as an outage would leave them."""
    start = datetime.now(UTC) - timedelta(days=7)
    async with Database(db_path) as db, Outbox(db) as outbox:
        batch = 20_000
        for first in range(0, events, batch):
            items = []
            for i in range(first, min(first + batch, events)):
                at = start + timedelta(seconds=i * 0.5)
                items.append(NewEvent("sale", sale_payload(i, at), epoch_ms(at)))
            await outbox.append_many(items)


def bulk_insert(path: Path, events: int) -> float:
    """Events/s of the cloud database's own executemany of the same rows, same schema."""
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    ids = [format_event_id(i) for i in EventIdGenerator().new_ids(events)]
    start = datetime.now(UTC) - timedelta(days=7)
    received = datetime.now(UTC).isoformat()
    rows_events, rows_sales, rows_lines, rows_payments = [], [], [], []
    for i in range(events):
        at = start + timedelta(seconds=i * 0.5)
        payload = sale_payload(i, at)
        rows_events.append(
            (STORE, ids[i], i + 1, "sale", 1, at.isoformat(), json.dumps(payload), received)
        )
        rows_sales.append(
            (
                STORE,
                payload["sale_id"],
                ids[i],
                payload["receipt_no"],
                i + 1,
                payload["register_id"],
                payload["staff_id"],
                None,
                payload["total"],
                "CNY",
                at.isoformat(),
                payload["receipt_url"],
            )
        )
        for n, line in enumerate(payload["lines"]):
            rows_lines.append(
                (
                    STORE,
                    payload["sale_id"],
                    n,
                    None,
                    line["sku"],
                    None,
                    line["name"],
                    1,
                    line["unit_price"],
                    line["discount"],
                )
            )
        rows_payments.append((STORE, payload["sale_id"], 0, "card", payload["total"]))
    batch = 5000
    began = time.perf_counter()
    for first in range(0, events, batch):
        last = first + batch
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO events (store_id, event_id, seq, kind, v, at, payload, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows_events[first:last],
        )
        conn.executemany(
            "INSERT INTO sales (store_id, sale_id, event_id, receipt_no, receipt_seq,"
            " register_id, staff_id, member_id, total, currency, occurred_at, receipt_url)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows_sales[first:last],
        )
        conn.executemany(
            "INSERT INTO sale_lines (store_id, sale_id, line_no, gtin, sku, epc, name, qty,"
            " unit_price, discount) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows_lines[2 * first : 2 * last],
        )
        conn.executemany(
            "INSERT INTO sale_payments (store_id, sale_id, idx, method, amount)"
            " VALUES (?, ?, ?, ?, ?)",
            rows_payments[first:last],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return events / elapsed


def unsent(db_path: Path) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM outbox WHERE sent_at IS NULL AND rejected_at IS NULL"
        ).fetchone()
    finally:
        conn.close()
    return int(count)


async def drain(work: Path, events: int) -> tuple[float, int]:
    """Seconds for the sync daemon to drain the backlog; and the events the cloud holds."""
    cloud_port = free_port()
    cloud_url = f"http://127.0.0.1:{cloud_port}"
    (work / "cloud").mkdir()
    cloud_toml = work / "cloud.toml"
    cloud_toml.write_text(
        f'[server]\nlisten = "127.0.0.1:{cloud_port}"\npublic_url = "{cloud_url}"\n'
        f'data_dir = "{work / "cloud"}"\n'
    )
    agent_toml = work / "agent.toml"
    agent_toml.write_text(
        f'[store]\nid = "{STORE}"\ndata_dir = "{work / "store"}"\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\nkey = "bench-pos-key-123"\n'
        f'[cloud]\nurl = "{cloud_url}"\n'
    )
    cloud = Service(
        "cloud", ["storelink-cloud", "run", "--config", str(cloud_toml)], work / "cloud.log"
    )
    await cloud.start()
    sync = Service(
        "sync", ["storelink-sync", "run", "--config", str(agent_toml)], work / "sync.log"
    )
    try:
        await wait_http_ok(f"{cloud_url}/v1/sync-status", cloud)
        token = (
            (
                await run_cli(
                    "storelink-cloud",
                    "stores",
                    "add",
                    "--config",
                    str(cloud_toml),
                    "--id",
                    STORE,
                    "--name",
                    "Bench",
                    "--region",
                    "east",
                )
            )
            .strip()
            .splitlines()[-1]
        )
        await run_cli(
            "storelink-agent",
            "enroll",
            "--config",
            str(agent_toml),
            "--cloud",
            cloud_url,
            "--token",
            token,
        )
        db_path = work / "store" / "agent.db"
        print(f"filling the store outbox with {events:,} sale events ...", flush=True)
        await fill_outbox(db_path, events)
        began = time.perf_counter()
        await sync.start()
        while True:
            left = await asyncio.to_thread(unsent, db_path)
            if left == 0:
                break
            if not sync.running:
                raise SystemExit(f"sync daemon exited; see {sync.log}")
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - began
    finally:
        await sync.stop()
        await cloud.stop()
    conn = sqlite3.connect(work / "cloud" / "cloud.db")
    (stored,) = conn.execute("SELECT count(*) FROM events").fetchone()
    conn.close()
    return elapsed, int(stored)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bulk_eps = bulk_insert(work / "bulk.db", args.events)
        print(f"cloud database bulk insert (executemany): {bulk_eps:12,.0f} events/s")
        drain_s, stored = asyncio.run(drain(work, args.events))
    sync_eps = args.events / drain_s
    print(f"sync daemon -> cloud, drained:             {sync_eps:12,.0f} events/s")
    print(f"backlog of {args.events:,} events drained in {drain_s:.1f} s; cloud holds {stored:,}")
    ratio = sync_eps / bulk_eps
    print(
        json.dumps(
            {
                "metric": "sync_ratio",
                "value": round(ratio, 3),
                "target": ">=0.5",
                "drain_s": round(drain_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
