"""Try-on session rules on hand-made read streams: pure logic, no sockets."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from agent.rfid.sessions import US, ReaderClock, SessionSettings, TryOn, TryOnTracker
from drivers.rfid.reads import TagRead

EPC = bytes.fromhex("3074257BF7194E4000001A85")
OTHER = bytes.fromhex("3074257BF7194E4000001A86")
ROOMS = {("r1", 1): "room-1", ("r1", 2): "room-2", ("r2", 1): "room-3"}
SETTINGS = SessionSettings.from_seconds(
    window_s=2.0, min_dwell_s=10.0, end_after_s=8.0, max_duration_s=600.0
)


def stream(
    t0: float,
    t1: float,
    *,
    antenna: int = 1,
    rssi: float = -50.0,
    epc: bytes = EPC,
    reader: str = "r1",
    hz: float = 10.0,
) -> list[TagRead]:
    """Reads of one tag by one antenna from t0 to t1 seconds at ``hz``."""
    n = int((t1 - t0) * hz)
    return [TagRead(reader, antenna, epc, rssi, round((t0 + i / hz) * US), 1) for i in range(n + 1)]


def run(
    tracker: TryOnTracker, reads: Iterable[TagRead], until_s: float, report_s: float = 0.2
) -> list[TryOn]:
    """Feed reads in reader reports of ``report_s``, ticking between, up to ``until_s``."""
    ordered = sorted(reads, key=lambda r: r.seen_at_us)
    done: list[TryOn] = []
    i = 0
    t = 0
    while t <= until_s * US:
        t += round(report_s * US)
        batch: dict[str, list[TagRead]] = {}
        while i < len(ordered) and ordered[i].seen_at_us < t:
            batch.setdefault(ordered[i].reader, []).append(ordered[i])
            i += 1
        for reader, reads_of_reader in batch.items():
            done += tracker.observe(reader, reads_of_reader)
        done += tracker.tick(t)
    return done


def tracker() -> TryOnTracker:
    return TryOnTracker(ROOMS, SETTINGS)


def test_visit_gives_one_session_in_the_strongest_room() -> None:
    reads = stream(5, 65) + stream(5, 65, antenna=2, rssi=-64.0, hz=6)
    sessions = run(tracker(), reads, 90)
    assert len(sessions) == 1
    (s,) = sessions
    assert (s.room, s.reader, s.epc, s.closed_by) == ("room-1", "r1", EPC, "left")
    assert s.started_us == 5 * US
    assert s.ended_us == 65 * US
    assert s.dwell_us == 60 * US


def test_cross_reads_of_another_reader_do_not_move_the_garment() -> None:
    # room-3 belongs to another reader; its antenna sees the garment now and then, weaker.
    reads = stream(0, 40) + stream(0, 40, antenna=1, reader="r2", rssi=-60.0, hz=8)
    sessions = run(tracker(), reads, 60)
    assert [(s.room, s.reader) for s in sessions] == [("room-1", "r1")]


def test_brief_shadowing_of_the_right_antenna_does_not_move_the_garment() -> None:
    # For 1.5 s (< window) only the neighbouring antenna reads the tag.
    reads = stream(0, 20) + stream(21.5, 40) + stream(0, 40, antenna=2, rssi=-63.0, hz=5)
    sessions = run(tracker(), reads, 60)
    assert [s.room for s in sessions] == ["room-1"]
    assert sessions[0].dwell_us == 40 * US


def test_short_gap_bridged_long_gap_ends_the_visit() -> None:
    bridged = run(tracker(), stream(0, 30) + stream(36, 60), 80)
    assert [(s.started_us, s.ended_us) for s in bridged] == [(0, 60 * US)]
    split = run(tracker(), stream(0, 30) + stream(45, 70), 90)
    assert [(s.started_us, s.ended_us) for s in split] == [(0, 30 * US), (45 * US, 70 * US)]


def test_garment_carried_past_is_not_a_try_on() -> None:
    # Past room-1 then room-2 in 6 s, read by both antennas on the way.
    reads = (
        stream(0, 3, rssi=-58.0)
        + stream(2, 6, antenna=2, rssi=-57.0)
        + stream(0, 6, antenna=2, rssi=-70.0, hz=3)
    )
    assert run(tracker(), reads, 30) == []


def test_moving_to_another_room_gives_two_sessions() -> None:
    reads = (
        stream(0, 30)
        + stream(0, 30, antenna=2, rssi=-66.0, hz=5)
        + stream(31, 70, antenna=2)
        + stream(31, 70, antenna=1, rssi=-66.0, hz=5)
    )
    sessions = run(tracker(), reads, 90)
    assert [s.room for s in sessions] == ["room-1", "room-2"]
    first, second = sessions
    # The hand-over is known to within the window (2 s).
    assert abs(first.ended_us - 30 * US) <= 2 * US
    assert abs(second.started_us - 31 * US) <= 2 * US
    assert second.ended_us == 70 * US


def test_left_behind_garment_gives_one_session_per_visit() -> None:
    t = tracker()
    # Left in room-1 for an hour (max duration 10 min), read once a second throughout.
    sessions = run(t, stream(0, 3600, hz=1), 3620, report_s=1.0)
    assert len(sessions) == 1
    (s,) = sessions
    assert s.closed_by == "max_duration"
    assert (s.started_us, s.dwell_us) == (0, 600 * US)
    # Staff take it out; later a shopper brings it back: a new visit, a new session.
    later = stream(4000, 4100, hz=2)
    again = run(t, later, 4200, report_s=1.0)
    assert [(x.closed_by, x.started_us) for x in again] == [("left", 4000 * US)]


def test_reader_restart_does_not_cut_or_end_a_session() -> None:
    t = tracker()
    done = run(t, stream(0, 30), 30)
    t.reader_down("r1")
    # 20 s without the reader (> end_after): the visit must survive.
    done += t.tick(50 * US)
    t.reader_up("r1", 50 * US)
    done += run(t, [r for r in stream(0, 80) if r.seen_at_us > 51 * US], 100)
    assert [(s.started_us, s.ended_us, s.closed_by) for s in done] == [(0, 80 * US, "left")]


def test_cross_reads_of_another_reader_during_an_outage_do_not_move_the_garment() -> None:
    t = tracker()
    done = run(t, stream(0, 30) + stream(0, 30, antenna=1, reader="r2", rssi=-62.0, hz=3), 30)
    t.reader_down("r1")
    # r1 is down for 20 s; r2's antenna (room-3) still cross-reads the garment.
    done += run(t, stream(30.2, 50, antenna=1, reader="r2", rssi=-62.0, hz=3), 50)
    t.reader_up("r1", 50 * US)
    done += run(t, [r for r in stream(0, 70) if r.seen_at_us > 50 * US], 90)
    assert [(s.room, s.started_us, s.ended_us) for s in done] == [("room-1", 0, 70 * US)]


def test_garment_gone_during_reader_outage_ends_at_its_last_read() -> None:
    t = tracker()
    done = run(t, stream(0, 30), 30)
    t.reader_down("r1")
    done += t.tick(50 * US)
    assert done == []
    t.reader_up("r1", 50 * US)
    done += t.tick(57 * US)
    assert done == []  # absence counts from the reader's return
    done += t.tick(59 * US)
    assert [(s.started_us, s.ended_us) for s in done] == [(0, 30 * US)]


def test_shutdown_closes_only_visits_past_min_dwell() -> None:
    t = tracker()
    run(t, stream(0, 40) + stream(35, 40, antenna=2, epc=OTHER), 40)
    sessions = t.close_all(41 * US)
    assert [(s.epc, s.closed_by, s.ended_us) for s in sessions] == [(EPC, "shutdown", 40 * US)]
    assert t.garments == 0


def test_unmapped_antennas_are_ignored() -> None:
    assert run(tracker(), stream(0, 60, antenna=4), 80) == []


@pytest.mark.parametrize(
    ("lag_s", "expected_offset_s"),
    [
        ([3600.2, 3600.1, 3600.3], 3600.1),  # constant offset: the smallest lag wins
        ([5.0, -7200.0], -7200.0),  # clock jumped forward: follow it
        ([5.0, 5.1, 42.0], 42.0),  # clock stepped back (reboot): re-anchor
    ],
)
def test_reader_clock_offset(lag_s: list[float], expected_offset_s: float) -> None:
    clock = ReaderClock()
    offset = 0
    for i, lag in enumerate(lag_s):
        seen = 1_000 * US + i * US
        offset = clock.offset_us(seen, seen + round(lag * US))
    assert offset == round(expected_offset_s * US)
