"""Backoff: exponential with full jitter and a cap; Retry-After is a floor, never shortened."""

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from agent.sync.backoff import MAX_RETRY_AFTER_S, Backoff, full_jitter, parse_retry_after

NOW = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)


def test_full_jitter_stays_within_the_doubling_ceiling_and_the_cap() -> None:
    rand = random.Random(7)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2**attempt)
        delays = [full_jitter(attempt, 0.5, 30.0, rand) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not around the ceiling.
        assert min(delays) < ceiling * 0.1 < ceiling * 0.9 < max(delays)


def test_a_long_outage_does_not_overflow() -> None:
    assert 0 <= full_jitter(10_000, 0.5, 60.0, random.Random(1)) <= 60.0


def test_backoff_grows_then_resets() -> None:
    backoff = Backoff(base_s=1.0, cap_s=8.0, rand=random.Random(3))
    ceilings = [1, 2, 4, 8, 8, 8]
    for ceiling in ceilings:
        assert 0 <= backoff.next_delay() <= ceiling
    assert backoff.attempt == len(ceilings)
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0


def test_retry_after_is_honoured_even_above_the_cap() -> None:
    backoff = Backoff(base_s=0.1, cap_s=1.0, rand=random.Random(5))
    assert all(backoff.next_delay(retry_after_s=7.0) == 7.0 for _ in range(20))
    # A Retry-After shorter than the jittered delay does not shorten it.
    backoff = Backoff(base_s=100.0, cap_s=100.0, rand=random.Random(5))
    assert backoff.next_delay(retry_after_s=0.0) > 0.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),
        ("999999999", MAX_RETRY_AFTER_S),
        (None, None),
        ("soon", None),
        ("-5", None),
        ("", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds
