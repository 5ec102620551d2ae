"""Scripted scenarios: deterministic, time-ordered reads whose shape matches the stated truth."""

from __future__ import annotations

import collections
import itertools
import statistics

from drivers.rfid.reads import TagRead
from drivers.rfid.scenarios import (
    SCENARIOS,
    Room,
    catalogue_gtins,
    fitting_rooms,
    restart,
    throughput,
)
from drivers.rfid.sgtin import decode_sgtin96

S = 1_000_000


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = fitting_rooms(seed=4, duration_s=3600)
    b = fitting_rooms(seed=4, duration_s=3600)
    c = fitting_rooms(seed=5, duration_s=3600)
    assert list(a.iter_reads()) == list(b.iter_reads())
    assert a.truth == b.truth
    assert a.truth != c.truth


def test_reads_are_in_time_order_within_the_duration() -> None:
    sc = fitting_rooms(seed=2, duration_s=2 * 3600, rooms=6, rooms_per_reader=4)
    reads = list(sc.iter_reads())
    times = [r.seen_at_us for r in reads]
    assert times == sorted(times)
    assert sc.start_us <= times[0]
    assert times[-1] < sc.start_us + 2 * 3600 * S
    assert sc.readers == ("reader-1", "reader-2")
    assert {(r.reader, r.antenna) for r in reads} == {(x.reader, x.antenna) for x in sc.rooms}
    assert all(r.count == 1 and r.rssi == round(r.rssi) for r in reads)


def test_try_ons_match_the_truth() -> None:
    sc = fitting_rooms(seed=3, duration_s=5 * 3600)
    reads = list(sc.iter_reads())
    by_tag_antenna: dict[tuple[bytes, str, int], list[TagRead]] = collections.defaultdict(list)
    for r in reads:
        by_tag_antenna[(r.epc, r.reader, r.antenna)].append(r)
    visits = collections.Counter((t.reader, t.antenna, t.start_us) for t in sc.truth)
    assert len(sc.truth) > 200
    assert set(visits.values()) <= {1, 2, 3, 4}
    assert all(60 * S <= t.end_us - t.start_us <= 600 * S for t in sc.truth)
    left = [t for t in sc.truth if t.left_behind]
    assert 0 < len(left) < 0.1 * len(sc.truth)
    gtins = set(catalogue_gtins())
    for t in sc.truth:
        assert decode_sgtin96(t.epc).gtin in gtins
        strong = [r for r in by_tag_antenna[(t.epc, t.reader, t.antenna)] if r.rssi > -55]
        assert strong, "a tried-on garment is read in its room"
        assert t.start_us <= strong[0].seen_at_us < t.start_us + 10 * S
        last = strong[-1].seen_at_us
        if t.left_behind:
            assert last > t.end_us + 15 * 60 * S or last > sc.start_us + 4.9 * 3600 * S
        else:
            assert last <= t.end_us + 2 * S


def test_cross_reads_are_weaker_and_rarer_in_the_neighbouring_rooms() -> None:
    sc = fitting_rooms(seed=8, duration_s=3 * 3600)
    truth = {t.epc: t for t in sc.truth}
    own_rssi, cross_rssi = [], []
    for r in sc.iter_reads():
        t = truth.get(r.epc)
        if t is None or not t.start_us <= r.seen_at_us < t.end_us:
            continue
        if (r.reader, r.antenna) == (t.reader, t.antenna):
            own_rssi.append(r.rssi)
        elif abs(r.antenna - t.antenna) == 1:
            cross_rssi.append(r.rssi)
    assert cross_rssi
    gap = statistics.mean(own_rssi) - statistics.mean(cross_rssi)
    assert 13 < gap < 17
    assert 0.2 < len(cross_rssi) / len(own_rssi) < 0.6


def test_browsers_are_short_and_weak() -> None:
    sc = fitting_rooms(seed=9, duration_s=4 * 3600)
    tried = {t.epc for t in sc.truth}
    spans: dict[tuple[bytes, int], list[int]] = collections.defaultdict(list)
    rssi: list[float] = []
    for r in sc.iter_reads():
        if r.epc not in tried:
            spans[(r.epc, r.antenna)].append(r.seen_at_us)
            rssi.append(r.rssi)
    assert len({epc for epc, _ in spans}) > 100
    assert max(max(v) - min(v) for v in spans.values()) < 20 * S
    assert max(rssi) < -50
    antennas_per_browser = collections.Counter(epc for epc, _ in spans)
    assert max(antennas_per_browser.values()) >= 2


def test_restart_scenario_has_a_gap_where_the_reader_is_down() -> None:
    sc = restart(seed=1, duration_s=3600, at_s=1500, down_s=30)
    assert sc.reboots_for("reader-1") == [(1500, 30)]
    lo, hi = sc.start_us + 1500 * S, sc.start_us + 1530 * S
    times = [r.seen_at_us for r in sc.iter_reads()]
    assert not [t for t in times if lo <= t < hi]
    assert [t for t in times if hi <= t < hi + 10 * S]
    spanning = [t for t in sc.truth if t.start_us < lo and t.end_us > hi]
    assert spanning, "some try-on spans the restart"


def test_throughput_is_exactly_1100_reads_per_second() -> None:
    sc = throughput(duration_s=5)
    per_second = collections.Counter((r.seen_at_us - sc.start_us) // S for r in sc.iter_reads())
    assert per_second == {0: 1100, 1: 1100, 2: 1100, 3: 1100, 4: 1100}
    assert sc.truth == []
    epcs = {r.epc for r in sc.iter_reads()}
    assert len(epcs) == 200


def test_endless_scenario_replays_the_same_prefix() -> None:
    sc = SCENARIOS["fitting-rooms"](seed=6)
    assert sc.duration_s is None
    first = list(itertools.islice(sc.iter_reads(), 3000))
    truth = list(sc.truth)
    again = list(itertools.islice(sc.iter_reads(), 3000))
    assert first == again
    assert truth
    assert sc.truth[: len(truth)] == truth
    assert first[-1].seen_at_us > sc.start_us + 5 * 60 * S


def test_rooms_are_laid_out_along_the_corridor() -> None:
    sc = fitting_rooms(seed=1, duration_s=60, rooms=5, rooms_per_reader=2)
    assert sc.rooms == (
        Room("reader-1", 1),
        Room("reader-1", 2),
        Room("reader-2", 1),
        Room("reader-2", 2),
        Room("reader-3", 1),
    )
    assert sc.neighbours(0) == [Room("reader-1", 2)]
    assert sc.neighbours(2) == [Room("reader-1", 2), Room("reader-2", 2)]
