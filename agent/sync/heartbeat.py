"""Heartbeat: the store tells the cloud how its sync and its devices are doing.

Regional staff read it through the cloud's ``GET /v1/sync-status``; the cloud counts a store
online while its last heartbeat is under three minutes old, so the daemon sends one every
30 seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from agent.db import Database
from agent.outbox import utc_iso
from agent.sync.client import CloudClient, EpochChanged
from agent.sync.epoch import EpochKeeper
from agent.sync.state import SyncStatus, read_status

MAX_VERSION = 32  # characters the cloud keeps


def heartbeat_body(status: SyncStatus, version: str, now: datetime) -> bytes:
    """The heartbeat JSON (sync-protocol.md) for a status."""
    last_error = status.last_error
    if last_error is not None and status.last_error_at is not None:
        last_error = f"{last_error} (at {status.last_error_at})"
    return msgspec.json.encode(
        {
            "at": utc_iso(now),
            "backlog": status.backlog,
            "oldest_unsent_age_s": status.oldest_unsent_age_s,
            "last_success_at": status.last_success_at,
            "last_error": last_error,
            "rejected": status.rejected,
            "devices": {
                name: {"available": device["available"], "detail": device["detail"]}
                for name, device in status.devices.items()
            },
            "version": version[:MAX_VERSION],
        }
    )


class Heartbeat:
    """Sends the status; :meth:`beat` is one round."""

    def __init__(
        self, db: Database, client: CloudClient, epochs: EpochKeeper, version: str
    ) -> None:
        self._db = db
        self._client = client
        self._epochs = epochs
        self._version = version

    async def beat(self) -> None:
        """Send one heartbeat; EpochChanged if the cloud's database changed."""
        now = datetime.now(UTC)
        status = await read_status(self._db.reader, now)
        answer = await self._client.post_heartbeat(heartbeat_body(status, self._version, now))
        if answer.epoch != status.epoch:
            raise EpochChanged(answer.epoch)
        self._epochs.confirm()
