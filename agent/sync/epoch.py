"""Epoch changes: the cloud's database was recreated or restored, so local state is resynced.

On a new epoch the replica is deleted and pulled again from cursor 0, and every outbox event
the cloud no longer holds (``seq`` above the cloud's ``max_seq`` for this store) is marked
unsent, so the uploader sends it again. Rejected events stay set aside. All of that, and the
new epoch, commit in one transaction: a crash halfway leaves the old epoch, which the next
answer from the cloud flags again.

``max_seq`` only says what the restored database holds if nothing reached it since: a batch
the uploader sent there before anyone noticed the new epoch raises ``max_seq`` above events
the cloud lost. So uploads pass through :meth:`EpochKeeper.sending`, which a resync closes
and drains before it asks the cloud; an answer from an unconfirmed epoch taints that epoch,
and a resync to a tainted epoch marks every sent event unsent (the cloud is idempotent: what
it holds is acknowledged again). To keep that rare, the uploader confirms the epoch
(:meth:`EpochKeeper.confirmed_within`) before it sends after a quiet spell or a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from agent.db import Database, Durability
from agent.replica import clear_replica
from agent.sync.client import CloudClient
from agent.sync.state import state_value, write_state

log = logging.getLogger(__name__)


class EpochKeeper:
    """Keeps local state in the cloud's epoch; one resync at a time, none during an upload."""

    def __init__(self, db: Database, client: CloudClient) -> None:
        self._db = db
        self._client = client
        self._lock = asyncio.Lock()
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sending = 0
        self._tainted: set[str] = set()
        self._confirmed_at: float | None = None

    @contextlib.asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """Around one upload and the recording of its answer: a resync waits for it."""
        await self._open.wait()
        self._sending += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._sending -= 1
            if not self._sending:
                self._idle.set()

    def taint(self, epoch: str) -> None:
        """Events reached the cloud in an epoch the local state does not know yet."""
        self._tainted.add(epoch)

    def confirm(self) -> None:
        """An answer just came in the stored epoch."""
        self._confirmed_at = asyncio.get_running_loop().time()

    def unconfirm(self) -> None:
        """The cloud went out of reach: it may come back with another database."""
        self._confirmed_at = None

    def confirmed_within(self, seconds: float) -> bool:
        """Whether an answer in the stored epoch came less than seconds ago."""
        at = self._confirmed_at
        return at is not None and asyncio.get_running_loop().time() - at < seconds

    async def resync(self) -> bool:
        """Adopt the cloud's epoch if it differs from the stored one; True if it did."""
        async with self._lock:
            self._open.clear()
            try:
                await self._idle.wait()
                return await self._adopt()
            finally:
                self._open.set()

    async def _adopt(self) -> bool:
        # The cloud's answer here, not the one that raised EpochChanged, is authoritative:
        # an answer still in flight from before a change must not switch the epoch back.
        cloud = await self._client.get_sync_state()
        tainted = cloud.epoch in self._tainted
        keep_up_to = 0 if tainted else cloud.max_seq
        async with self._db.write(Durability.NORMAL) as conn:
            old = await state_value(conn, "epoch")
            if old == cloud.epoch:
                self.confirm()
                return False
            await clear_replica(conn)
            unmarked = await conn.execute(
                "UPDATE outbox SET sent_at = NULL WHERE seq > ? AND sent_at IS NOT NULL",
                (keep_up_to,),
            )
            await write_state(conn, {"epoch": cloud.epoch, "cursor": "0"})
        self._tainted.clear()
        self.confirm()
        log.warning(
            "the cloud's epoch changed from %s to %s: replica cleared for a full pull, "
            "%d events after seq %d will be sent again%s",
            old,
            cloud.epoch,
            unmarked.rowcount,
            keep_up_to,
            " (uploads reached the new database first: its max_seq was not trusted)"
            if tainted
            else "",
        )
        return True
