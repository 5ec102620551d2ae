"""Sync state in the agent database, and the status built from it.

``sync_state`` is a key/value table:

- ``cloud_url``, ``enrolled_at``: the cloud the store enrolled with, and when (agent.enroll);
- ``epoch``: the cloud epoch that the replica and the outbox's sent marks belong to;
- ``cursor``: the change-feed cursor the replica has applied;
- ``last_success_at``: the last exchange that moved data (a batch acknowledged, a page applied);
- ``error.<loop>``: the last failure of a loop (upload, download, heartbeat) as JSON
  ``{"at", "message"}``, removed when that loop succeeds again.

Everything here reads committed data only, so ``storelink-sync status`` works from another
process while the daemon runs or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from agent.eventid import format_event_id
from agent.outbox import BACKLOG_SQL, ms_to_iso, utc_iso
from agent.replica import REPLICA_TABLES
from agent.sync.client import NotEnrolled

ERROR_PREFIX = "error."
REJECTED_SHOWN = 20

_UPSERT = (
    "INSERT INTO sync_state (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


async def read_state(conn: aiosqlite.Connection) -> dict[str, str]:
    """All of sync_state."""
    rows = await conn.execute_fetchall("SELECT key, value FROM sync_state")
    return {str(key): str(value) for key, value in rows}


async def state_value(conn: aiosqlite.Connection, key: str) -> str | None:
    """One value of sync_state, or None."""
    async with conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    return None if row is None else str(row[0])


async def write_state(conn: aiosqlite.Connection, values: Mapping[str, str]) -> None:
    """Set keys of sync_state, inside the caller's write transaction."""
    await conn.executemany(_UPSERT, list(values.items()))


async def delete_state(conn: aiosqlite.Connection, keys: Iterable[str]) -> None:
    """Remove keys of sync_state, inside the caller's write transaction."""
    await conn.executemany("DELETE FROM sync_state WHERE key = ?", [(k,) for k in keys])


def error_value(message: str, at: datetime) -> str:
    """The stored form of a loop's last error."""
    return json.dumps({"at": utc_iso(at), "message": message})


@dataclass(frozen=True, slots=True)
class Enrollment:
    """Where the store enrolled, read from sync_state."""

    cloud_url: str
    enrolled_at: str | None


async def read_enrollment(conn: aiosqlite.Connection) -> Enrollment:
    """The store's enrollment; NotEnrolled when ``storelink-agent enroll`` has not run."""
    state = await read_state(conn)
    if "cloud_url" not in state:
        raise NotEnrolled(
            "this store has not enrolled with a cloud: run "
            "`storelink-agent enroll --config FILE --cloud URL --token TOKEN` first"
        )
    return Enrollment(state["cloud_url"], state.get("enrolled_at"))


@dataclass(frozen=True, slots=True)
class RejectedEvent:
    """An event the cloud refused, set aside."""

    seq: int
    event_id: str
    kind: str
    rejected_at: str
    reason: str


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """What `storelink-sync status` and the heartbeat report."""

    store_id: str | None
    cloud_url: str | None
    enrolled_at: str | None
    epoch: str | None
    cursor: int
    backlog: int
    oldest_unsent_at: str | None
    oldest_unsent_age_s: float | None
    last_success_at: str | None
    last_error: str | None
    last_error_at: str | None
    rejected: int
    rejected_events: list[RejectedEvent]
    replica: dict[str, int]
    devices: dict[str, dict[str, Any]]

    def as_json(self) -> dict[str, Any]:
        """JSON form for ``status --json``."""
        return asdict(self)


def _last_error(state: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The most recent loop error as ("loop: message", at)."""
    latest: tuple[str, str] | None = None
    for key, value in state.items():
        if not key.startswith(ERROR_PREFIX):
            continue
        error = json.loads(value)
        entry = (error["at"], f"{key.removeprefix(ERROR_PREFIX)}: {error['message']}")
        latest = entry if latest is None or entry > latest else latest
    return (None, None) if latest is None else (latest[1], latest[0])


async def read_status(conn: aiosqlite.Connection, now: datetime | None = None) -> SyncStatus:
    """The sync status from the database (committed data only)."""
    now = now or datetime.now(UTC)
    state = await read_state(conn)
    ((backlog, oldest_ms),) = await conn.execute_fetchall(BACKLOG_SQL)
    ((rejected,),) = await conn.execute_fetchall(
        "SELECT count(*) FROM outbox WHERE rejected_at IS NOT NULL"
    )
    refused = await conn.execute_fetchall(
        "SELECT seq, event_id, kind, rejected_at, rejected_reason FROM outbox"
        " WHERE rejected_at IS NOT NULL ORDER BY seq DESC LIMIT ?",
        (REJECTED_SHOWN,),
    )
    replica = {}
    for table in REPLICA_TABLES:
        ((count,),) = await conn.execute_fetchall(f"SELECT count(*) FROM {table}")  # noqa: S608
        replica[table] = int(count)
    devices = {
        f"printer:{name}": {"available": bool(available), "detail": detail, "checked_at": at}
        for name, available, detail, at in await conn.execute_fetchall(
            "SELECT name, available, detail, checked_at FROM printer_status ORDER BY name"
        )
    }
    store = await conn.execute_fetchall("SELECT value FROM store_meta WHERE key = 'store_id'")
    last_error, last_error_at = _last_error(state)
    return SyncStatus(
        store_id=next((str(row[0]) for row in store), None),
        cloud_url=state.get("cloud_url"),
        enrolled_at=state.get("enrolled_at"),
        epoch=state.get("epoch"),
        cursor=int(state.get("cursor", "0")),
        backlog=int(backlog),
        oldest_unsent_at=None if oldest_ms is None else ms_to_iso(oldest_ms),
        oldest_unsent_age_s=None
        if oldest_ms is None
        else max(0.0, now.timestamp() - oldest_ms / 1000),
        last_success_at=state.get("last_success_at"),
        last_error=last_error,
        last_error_at=last_error_at,
        rejected=int(rejected),
        rejected_events=[
            RejectedEvent(seq, format_event_id(event_id), kind, at, reason)
            for seq, event_id, kind, at, reason in refused
        ],
        replica=replica,
        devices=devices,
    )
