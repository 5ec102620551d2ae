"""Outbox ingest: sustained telemetry events/s into the agent's outbox.

Compared, in the same run, with raw ``sqlite3.executemany`` into the same schema with the same
settings (WAL, synchronous=NORMAL for telemetry, batches of the same size), rows prepared
in advance, so the baseline pays for nothing but SQLite.

    .venv/bin/python bench/outbox_ingest.py [--events 200000] [--batch 1000]

Last line: {"metric": "outbox_ingest_ratio", "value": ..., "target": ">=0.7"}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from agent.db import Database
from agent.eventid import EventIdGenerator
from agent.migrations import MIGRATIONS
from agent.outbox import NewEvent, Outbox, epoch_ms


def payload(i: int) -> dict[str, object]:
    """A try-on-sized telemetry payload."""
    return {
        "room": f"F{i % 6}",
        "gtin": "06901234567892",
        "sku": f"SKU-{i % 500:04d}",
        "start": "2026-11-28T10:00:00.000Z",
        "end": "2026-11-28T10:04:12.000Z",
        "dwell_s": 252 + i % 60,
    }


async def agent_run(path: Path, events: int, batch: int, via_emit: bool) -> float:
    """Events/s through the agent's outbox: append_many batches, or emit() + batching writer."""
    now = epoch_ms(datetime.now(UTC))
    items = [NewEvent("tryon", payload(i), now + i) for i in range(events)]
    async with Database(path) as db, Outbox(db, max_batch=batch) as outbox:
        started = time.perf_counter()
        if via_emit:
            # Devices emit in bursts and yield to the loop between them.
            for start in range(0, events, batch):
                for item in items[start : start + batch]:
                    outbox.emit(item)
                await asyncio.sleep(0)
            await outbox.flush()
        else:
            for start in range(0, events, batch):
                await outbox.append_many(items[start : start + batch])
        elapsed = time.perf_counter() - started
    return events / elapsed


def raw_run(path: Path, events: int, batch: int) -> float:
    """Events/s of bare executemany on the same schema and settings."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for script in MIGRATIONS:
        for statement in script.split(";\n"):
            if statement.strip():
                conn.execute(statement)
    stamp = epoch_ms(datetime.now(UTC))
    # The same time-ordered ids the agent writes (random ones would slow the index down).
    ids = EventIdGenerator().new_ids(events)
    rows = [
        (ids[i], "tryon", 1, stamp + i, json.dumps(payload(i), separators=(",", ":")).encode())
        for i in range(events)
    ]
    started = time.perf_counter()
    for start in range(0, events, batch):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO outbox (event_id, kind, schema_version, occurred_at_ms, payload)"
            " VALUES (?, ?, ?, ?, ?)",
            rows[start : start + batch],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    raw, agent, emit = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            raw.append(raw_run(Path(tmp, f"raw{r}.db"), args.events, args.batch))
            agent.append(
                asyncio.run(agent_run(Path(tmp, f"a{r}.db"), args.events, args.batch, False))
            )
            emit.append(
                asyncio.run(agent_run(Path(tmp, f"e{r}.db"), args.events, args.batch, True))
            )
    raw_eps, agent_eps, emit_eps = (statistics.median(x) for x in (raw, agent, emit))
    for label, value, runs in (
        ("raw sqlite3.executemany", raw_eps, raw),
        ("agent Outbox.append_many", agent_eps, agent),
        ("agent Outbox.emit (batched)", emit_eps, emit),
    ):
        print(f"{label:28} {value:12,.0f} events/s  (runs: {[round(x) for x in runs]})")
    ratio = min(agent_eps, emit_eps) / raw_eps
    print(
        json.dumps({"metric": "outbox_ingest_ratio", "value": round(ratio, 3), "target": ">=0.7"})
    )


if __name__ == "__main__":
    main()
