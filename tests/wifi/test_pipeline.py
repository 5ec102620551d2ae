"""The pipeline on a generated capture: exact device, visitor, fixed and malformed counts."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from agent.wifi.calibration import OccupancyModel
from agent.wifi.devices import DeviceGrouper, FixedLearner
from agent.wifi.privacy import DeviceHasher
from agent.wifi.replay import ReplaySettings, read_capture, replay, settings_for
from agent.wifi.windows import WindowStats, dwell_bin
from tests import wifi_pcap as wp
from tests.wifi import scenario


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenario.build().write(tmp_path_factory.mktemp("wifi") / "shop.pcap")


def run(path: Path, window_s: int) -> list[WindowStats]:
    model = OccupancyModel.uncalibrated(max(window_s, 60))
    windows, _ = replay(read_capture(path), settings_for(window_s, model, ReplaySettings()), model)
    return windows


def test_ten_minute_windows_count_each_known_device_once(capture: Path) -> None:
    windows = run(capture, 600)
    assert len(windows) == 12  # two hours
    first, second = windows[0], windows[1]
    # iphone, android (both randomising), laptop, passer, ghost; the printer is fixed.
    assert (first.devices, first.visitors, first.passers_by) == (5, 3, 2)
    assert first.fixed_excluded == 1
    assert first.frames == scenario.build().probes_in_first_window == 139
    assert first.malformed == 3  # the beacons are not probes and not malformed
    assert first.dwell_hist == (0, 0, 0, 0, 0, 0)
    # Everyone but the printer left: two passers-by (<1 min) and three visitors (5-15 min).
    assert second.dwell_hist == (2, 0, 3, 0, 0, 0)
    assert (second.devices, second.fixed_excluded, second.frames) == (0, 1, 10)
    assert all(w.devices == 0 and w.fixed_excluded == 1 for w in windows[1:])
    assert all(w.new_devices is None and w.repeat_devices is None for w in windows)


def test_one_minute_windows_and_visitor_dwell_threshold(capture: Path) -> None:
    windows = run(capture, 60)
    assert len(windows) == 120
    head = [(w.devices, w.visitors, w.passers_by) for w in windows[:6]]
    # Visitors need 120 s of dwell: none in the first two minutes; passers-by at minute 5.
    assert head == [(3, 0, 3), (3, 0, 3), (3, 3, 0), (3, 3, 0), (3, 3, 0), (5, 3, 2)]
    assert sum(w.malformed for w in windows) == 3
    assert sum(sum(w.dwell_hist) for w in windows) == 5


def test_grouper_joins_bursts_and_keeps_distant_twins_apart() -> None:
    hasher = DeviceHasher.ephemeral(date(2024, 6, 1))
    grouper = DeviceGrouper()

    def probe(mac: str, t: float, seq: int, rssi: int) -> object:
        from drivers.wifi.probe import ProbeParser

        frame = wp.probe_frame(
            wp.Probe(mac=mac, ts_us=scenario.s(t), seq=seq, rssi=rssi, ies=wp.IPHONE_IES)
        )
        return ProbeParser(hasher).parse(frame, scenario.s(t))

    a = grouper.observe(probe("02:00:00:00:00:01", 0, 10, -50))  # type: ignore[arg-type]
    same_burst = grouper.observe(probe("02:00:00:00:00:02", 0.5, 900, -70))  # type: ignore[arg-type]
    next_seq = grouper.observe(probe("02:00:00:00:00:03", 60, 12, -80))  # type: ignore[arg-type]
    far_twin = grouper.observe(probe("02:00:00:00:00:04", 70, 3000, -40))  # type: ignore[arg-type]
    too_late = grouper.observe(probe("02:00:00:00:00:05", 400, 13, -80))  # type: ignore[arg-type]
    assert a is same_burst is next_seq
    assert far_twin is not a
    assert too_late is not a
    assert too_late is not far_twin
    assert len(grouper) == 3
    assert a.addresses == 3


def test_fixed_learner_needs_most_slots_of_an_hour() -> None:
    learner = FixedLearner(fraction=0.7, horizon_slots=72, min_slots=6)
    slot = 600_000_000
    for i in range(10):
        learner.see(b"pc", i * slot)
        if i < 6:
            learner.see(b"visitor", i * slot)
        if i == 9:
            learner.see(b"late", i * slot)
    assert learner.watched_slots == 10
    assert learner.is_fixed(b"pc")
    assert not learner.is_fixed(b"visitor")  # 6 of 10 slots < 70 %
    assert not learner.is_fixed(b"late")
    assert learner.is_fixed(b"new", tag=b"known") is False
    learner.remember([b"known"])
    assert learner.is_fixed(b"new", tag=b"known")
    learner.restart()
    assert not learner.is_fixed(b"pc")


@pytest.mark.parametrize(
    ("dwell_s", "expected"), [(0, 0), (59.9, 0), (60, 1), (299, 1), (300, 2), (3599, 4), (3600, 5)]
)
def test_dwell_bins(dwell_s: float, expected: int) -> None:
    assert dwell_bin(dwell_s) == expected
