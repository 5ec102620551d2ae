"""Device availability (RFID readers, Wi-Fi sniffer, camera) in ``device_status``.

Each service records a change of its device's state here; ``storelink-agent status``,
``GET /metrics`` and the doctor read it. Printers keep their own ``printer_status`` table.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from agent.db import Database, Durability
from agent.outbox import utc_iso

_UPSERT = """
INSERT INTO device_status (kind, name, available, detail, checked_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (kind, name) DO UPDATE SET available = excluded.available,
    detail = excluded.detail, checked_at = excluded.checked_at
"""


async def record_device_status(
    db: Database, kind: str, states: Iterable[tuple[str, bool, str]]
) -> None:
    """Record ``(name, available, detail)`` of devices of one kind, checked now."""
    now = utc_iso(datetime.now(UTC))
    rows = [(kind, name, int(available), detail, now) for name, available, detail in states]
    if not rows:
        return
    async with db.write(Durability.NORMAL) as conn:
        await conn.executemany(_UPSERT, rows)
