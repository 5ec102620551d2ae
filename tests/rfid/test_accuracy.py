"""Accuracy of try-on sessions on scripted scenarios with known truth (no network).

The scenarios (drivers/rfid/scenarios.py) have cross-reads through the partitions, garments
left behind, people browsing past the rooms and walking past on their way in, and a reader
restart. Sessions come from the tracker with the config's default tuning, fed in reader-report
batches with a periodic tick, the way the service feeds it. Precision and recall are printed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from agent.rfid.config import RfidConfig
from agent.rfid.sessions import US, SessionSettings, TryOn, TryOnTracker
from drivers.rfid.reads import TagRead
from drivers.rfid.scenarios import Scenario, TrueTryOn, fitting_rooms, restart

REPORT_US = 50_000  # the simulator's report interval
TICK_US = 250_000  # the service's tick
TARGET = 0.98


def default_settings() -> SessionSettings:
    """The tuning an agent gets when [rfid] sets none."""
    c = RfidConfig()
    return SessionSettings.from_seconds(c.window_s, c.min_dwell_s, c.end_after_s, c.max_duration_s)


def room_name(reader: str, antenna: int) -> str:
    return f"{reader}/ant{antenna}"


def batches(reads: Iterator[TagRead]) -> Iterator[tuple[int, str, list[TagRead]]]:
    """(report time, reader, reads) as each reader would report them, in time order."""
    pending: dict[str, tuple[int, list[TagRead]]] = {}
    for read in reads:
        due = (read.seen_at_us // REPORT_US + 1) * REPORT_US
        slot = pending.get(read.reader)
        if slot is not None and slot[0] != due:
            yield slot[0], read.reader, slot[1]
            slot = None
        if slot is None:
            slot = pending[read.reader] = (due, [])
        slot[1].append(read)
    for reader, (due, reads_of) in sorted(pending.items(), key=lambda kv: kv[1][0]):
        yield due, reader, reads_of


def replay(scenario: Scenario, settings: SessionSettings) -> list[TryOn]:
    """Every session the tracker produces on the scenario, restarts reported as the driver does."""
    rooms = {(r.reader, r.antenna): room_name(r.reader, r.antenna) for r in scenario.rooms}
    tracker = TryOnTracker(rooms, settings)
    outages: list[tuple[int, bool, str]] = []
    for reboot in scenario.reboots:
        down_at = scenario.start_us + round(reboot.at_s * US)
        outages.append((down_at, False, reboot.reader))
        outages.append((down_at + round(reboot.down_s * US), True, reboot.reader))
    heapq.heapify(outages)
    done: list[TryOn] = []
    next_tick = scenario.start_us
    for at, reader, reads in batches(scenario.iter_reads()):
        while outages and outages[0][0] <= at:
            when, up, who = heapq.heappop(outages)
            done += tracker.tick(when)
            if up:
                tracker.reader_up(who, when)
            else:
                tracker.reader_down(who)
        while next_tick <= at:
            done += tracker.tick(next_tick)
            next_tick += TICK_US
        done += tracker.observe(reader, reads)
    assert scenario.end_us is not None
    done += tracker.tick(scenario.end_us + 2 * 3600 * US)
    return done + tracker.close_all(scenario.end_us + 2 * 3600 * US)


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    detected: int
    truth: int
    left_behind_found: int
    left_behind: int


def score(scenario: Scenario, sessions: list[TryOn]) -> Score:
    """One-to-one matching: same garment, same room, overlapping in time."""
    truth: list[TrueTryOn] = scenario.truth
    matched: set[int] = set()
    hits = 0
    for s in sorted(sessions, key=lambda s: s.started_us):
        for i, t in enumerate(truth):
            if (
                i not in matched
                and t.epc == s.epc
                and room_name(t.reader, t.antenna) == s.room
                and s.started_us < t.end_us
                and t.start_us < s.ended_us
            ):
                matched.add(i)
                hits += 1
                break
    left = [i for i, t in enumerate(truth) if t.left_behind]
    return Score(
        precision=hits / len(sessions) if sessions else 0.0,
        recall=len(matched) / len(truth),
        detected=len(sessions),
        truth=len(truth),
        left_behind_found=sum(1 for i in left if i in matched),
        left_behind=len(left),
    )


@pytest.mark.parametrize(
    ("label", "scenario"),
    [
        # 8 rooms on 2 readers (cross-reads between readers too), 3 busy hours, 4% left behind.
        (
            "fitting-rooms 8 rooms/2 readers 3h",
            fitting_rooms(seed=3, duration_s=3 * 3600, rooms=8, rooms_per_reader=4),
        ),
        # More left-behind garments and cross-reads half as weak again.
        (
            "fitting-rooms hard 6 rooms 2h",
            fitting_rooms(
                seed=11,
                duration_s=2 * 3600,
                rooms=6,
                left_behind_p=0.15,
                cross_read_p=0.6,
                cross_read_db=10.0,
                browse_every_s=30.0,
            ),
        ),
        ("restart 4 rooms 1h, reader down 30 s", restart(seed=2, down_s=30.0)),
    ],
)
def test_session_precision_and_recall(
    label: str, scenario: Scenario, capsys: pytest.CaptureFixture[str]
) -> None:
    sessions = replay(scenario, default_settings())
    result = score(scenario, sessions)
    with capsys.disabled():
        print(
            f"\n[rfid accuracy] {label}: precision {result.precision:.4f} "
            f"recall {result.recall:.4f} ({result.detected} sessions, {result.truth} true "
            f"try-ons, left behind found {result.left_behind_found}/{result.left_behind})"
        )
    assert result.truth > 40
    assert result.precision >= TARGET
    assert result.recall >= TARGET
    assert result.left_behind_found == result.left_behind
