"""When to try again: exponential backoff with full jitter and a cap, and Retry-After.

Pure: the random source and the clock are arguments, so the rules are tested without waiting.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# A Retry-After further out than this is a misconfigured proxy, not a plan.
MAX_RETRY_AFTER_S = 3600.0


def full_jitter(attempt: int, base_s: float, cap_s: float, rand: random.Random) -> float:
    """A delay drawn uniformly from [0, min(cap, base * 2**attempt)] (attempt counts from 0)."""
    # min() before the power would overflow: attempts keep counting through long outages.
    ceiling = cap_s if attempt >= 64 else min(cap_s, base_s * 2**attempt)
    return rand.uniform(0, ceiling)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks for (delay-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


@dataclass
class Backoff:
    """Delays for successive failures of one loop; :meth:`reset` after a success."""

    base_s: float = 0.5
    cap_s: float = 60.0
    rand: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self, retry_after_s: float | None = None) -> float:
        """The wait before the next try: jittered, never sooner than the cloud asked."""
        delay = full_jitter(self.attempt, self.base_s, self.cap_s, self.rand)
        self.attempt += 1
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay

    def reset(self) -> None:
        """Start again from the smallest delay."""
        self.attempt = 0
