"""Per-window analytics: devices present, visitors and passers-by, dwell, occupancy features.

:class:`WindowAggregator` is fed (probe, device) pairs in time order and closes windows of
``window_s`` seconds as time passes them, returning one :class:`WindowStats` per window
(empty windows included, so a live sniffer reports every minute). Definitions:

- *devices*: distinct devices with a frame in the window, the store's fixed devices excluded
  (counted apart in ``fixed_excluded``);
- *visitor*: a device whose visit so far reached ``visitor_rssi_dbm`` (it came close) and
  lasted ``visitor_dwell_s``; every other device is a *passer-by*;
- *dwell_hist*: visits that ended when this window closed (the device had been gone for the
  visit gap), by dwell: <1, 1-5, 5-15, 15-30, 30-60, >=60 minutes;
- occupancy *features* are computed over the trailing ``feature_s`` seconds ending with the
  window (the calibration's window, 600 s by default), so one-minute windows get an estimate
  on the same footing as the 10-minute windows the model was fitted on.

:class:`Rollup` sums one-minute windows into 10-minute and hourly rows (distinct devices of
the whole period, mean occupancy) for the local status table.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from agent.wifi.devices import Device, DeviceGrouper, Probe

DWELL_EDGES_S = (60, 300, 900, 1800, 3600)  # bins: <1, 1-5, 5-15, 15-30, 30-60, >=60 min
FEATURES = ("devices", "near", "global_all", "global_near", "random_all", "random_near")


def dwell_bin(dwell_s: float) -> int:
    """The dwell histogram bin (0-5) of a visit of ``dwell_s`` seconds."""
    for i, edge in enumerate(DWELL_EDGES_S):
        if dwell_s < edge:
            return i
    return len(DWELL_EDGES_S)


@dataclass(frozen=True, slots=True)
class WindowSettings:
    """Thresholds of the window analytics (the ``[wifi]`` config supplies them)."""

    window_s: int = 60
    feature_s: int = 600
    visit_gap_s: int = 300
    visitor_rssi_dbm: int = -70
    visitor_dwell_s: int = 120
    near_rssi_dbm: int = -65


@dataclass(frozen=True, slots=True)
class WindowStats:
    """The aggregates of one window (what a ``wifi.window`` event carries, and features)."""

    start_us: int
    window_s: int
    devices: int
    visitors: int
    passers_by: int
    occupancy: float
    dwell_hist: tuple[int, ...]
    new_devices: int | None
    repeat_devices: int | None
    fixed_excluded: int
    frames: int
    malformed: int
    features: Mapping[str, float]
    device_numbers: frozenset[int] = frozenset()


def occupancy_features(
    entries: Iterable[tuple[Device, int | None]], near_rssi_dbm: int
) -> dict[str, float]:
    """Feature counts of the non-fixed (device, frame RSSI) pairs of a period."""
    best: dict[int, tuple[Device, int | None]] = {}
    for device, rssi in entries:
        held = best.get(device.number)
        if held is None or (rssi is not None and (held[1] is None or rssi > held[1])):
            best[device.number] = (device, rssi)
    out = dict.fromkeys(FEATURES, 0.0)
    for device, rssi in best.values():
        near = rssi is not None and rssi >= near_rssi_dbm
        kind = "random" if device.randomised else "global"
        out["devices"] += 1
        out[f"{kind}_all"] += 1
        if near:
            out["near"] += 1
            out[f"{kind}_near"] += 1
    return out


Estimator = Callable[[Mapping[str, float]], float]
FixedTest = Callable[[Device], bool]
RepeatTest = Callable[[Device], bool]


@dataclass(slots=True)
class _Open:
    start_us: int
    frames: int = 0
    malformed: int = 0
    present: dict[int, Device] = field(default_factory=dict)


class WindowAggregator:
    """Turns a time-ordered stream of (probe, device) into closed windows (module doc)."""

    def __init__(
        self,
        settings: WindowSettings,
        grouper: DeviceGrouper,
        *,
        is_fixed: FixedTest,
        estimate: Estimator,
        is_repeat: RepeatTest | None = None,
    ) -> None:
        self.settings = settings
        self._grouper = grouper
        self._is_fixed = is_fixed
        self._estimate = estimate
        self._is_repeat = is_repeat
        self._window_us = settings.window_s * 1_000_000
        self._open: _Open | None = None
        self._recent: deque[tuple[int, Device, int | None]] = deque()

    def _align(self, ts_us: int) -> int:
        return ts_us - ts_us % self._window_us

    def ingest(
        self, probe: Probe, seen: Callable[[Device, int], None] | None = None
    ) -> list[WindowStats]:
        """One probe through the pipeline: close finished windows, group it, count it.

        Windows close before the grouper sees the frame, so a closing window does not see its
        devices' later frames. ``seen(device, ts_us)`` (the fixed-device learner) is told of
        the device in between. Returns the windows that closed.
        """
        closed = self.advance(probe.ts_us)
        device = self._grouper.observe(probe)
        if seen is not None:
            seen(device, probe.ts_us)
        return closed + self.add(probe, device)

    def add(self, probe: Probe, device: Device) -> list[WindowStats]:
        """Count one frame; returns the windows that closed before it.

        Call :meth:`advance` with the frame's time before the grouper sees the frame, so a
        closing window does not see its devices' later frames.
        """
        closed = self.advance(probe.ts_us)
        window = self._ensure(probe.ts_us)
        window.frames += 1
        window.present[device.number] = device
        self._recent.append((probe.ts_us, device, probe.rssi))
        return closed

    def add_malformed(self, count: int, ts_us: int) -> list[WindowStats]:
        """Count frames the parser rejected as malformed at ``ts_us``."""
        closed = self.advance(ts_us)
        self._ensure(ts_us).malformed += count
        return closed

    def _ensure(self, ts_us: int) -> _Open:
        if self._open is None:
            self._open = _Open(self._align(ts_us))
        return self._open

    def advance(self, now_us: int) -> list[WindowStats]:
        """Close every window that ends at or before ``now_us`` (empty ones included)."""
        closed: list[WindowStats] = []
        while self._open is not None and self._open.start_us + self._window_us <= now_us:
            end = self._open.start_us + self._window_us
            ended = self._grouper.expire(end - self.settings.visit_gap_s * 1_000_000)
            closed.append(self._close(self._open, ended))
            self._open = _Open(end)
        return closed

    def finish(self) -> list[WindowStats]:
        """Close the open window at the end of a capture, ending every visit."""
        if self._open is None:
            return []
        window, self._open = self._open, None
        return [self._close(window, self._grouper.expire_all())]

    def _close(self, window: _Open, ended: list[Device]) -> WindowStats:
        s = self.settings
        end = window.start_us + self._window_us
        horizon = end - s.feature_s * 1_000_000
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        fixed_numbers: set[int] = set()
        counted: list[Device] = []
        for device in window.present.values():
            if self._is_fixed(device):
                fixed_numbers.add(device.number)
            else:
                counted.append(device)
        visitors = sum(
            1
            for d in counted
            if d.max_rssi is not None
            and d.max_rssi >= s.visitor_rssi_dbm
            and d.dwell_s >= s.visitor_dwell_s
        )
        hist = [0] * (len(DWELL_EDGES_S) + 1)
        for device in ended:
            if not self._is_fixed(device):
                hist[dwell_bin(device.dwell_s)] += 1
        features = occupancy_features(
            ((d, r) for t, d, r in self._recent if t < end and not self._is_fixed(d)),
            s.near_rssi_dbm,
        )
        new = repeat = None
        if self._is_repeat is not None:
            arrived = [d for d in counted if d.first_us >= window.start_us]
            repeat = sum(1 for d in arrived if self._is_repeat(d))
            new = len(arrived) - repeat
        return WindowStats(
            start_us=window.start_us,
            window_s=s.window_s,
            devices=len(counted),
            visitors=visitors,
            passers_by=len(counted) - visitors,
            occupancy=round(max(0.0, self._estimate(features)), 2),
            dwell_hist=tuple(hist),
            new_devices=new,
            repeat_devices=repeat,
            fixed_excluded=len(fixed_numbers),
            frames=window.frames,
            malformed=window.malformed,
            features=features,
            device_numbers=frozenset(d.number for d in counted),
        )


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One 10-minute or hourly roll-up of one-minute windows."""

    start_us: int
    period_s: int
    devices: int
    visitors: int
    passers_by: int
    occupancy: float
    dwell_hist: tuple[int, ...]
    fixed_excluded: int
    frames: int
    malformed: int
    minutes: int


@dataclass(slots=True)
class _Acc:
    start_us: int
    devices: set[int] = field(default_factory=set)
    visitors: int = 0
    passers_by: int = 0
    occupancy: float = 0.0
    hist: list[int] = field(default_factory=lambda: [0] * (len(DWELL_EDGES_S) + 1))
    fixed: int = 0
    frames: int = 0
    malformed: int = 0
    minutes: int = 0


class Rollup:
    """Sums windows into periods of ``period_s``; :meth:`add` returns completed periods."""

    def __init__(self, period_s: int) -> None:
        self.period_s = period_s
        self._period_us = period_s * 1_000_000
        self._acc: _Acc | None = None

    def add(self, window: WindowStats) -> list[RollupRow]:
        """Fold one window in; a window past the current period completes it."""
        start = window.start_us - window.start_us % self._period_us
        done: list[RollupRow] = []
        if self._acc is not None and self._acc.start_us != start:
            done.append(self._row(self._acc))
            self._acc = None
        acc = self._acc = self._acc or _Acc(start)
        acc.devices |= window.device_numbers
        # Visitors and passers-by of a period: the most seen in any one window of it.
        acc.visitors = max(acc.visitors, window.visitors)
        acc.passers_by = max(acc.passers_by, window.passers_by)
        acc.occupancy += window.occupancy
        acc.hist = [a + b for a, b in zip(acc.hist, window.dwell_hist, strict=True)]
        acc.fixed = max(acc.fixed, window.fixed_excluded)
        acc.frames += window.frames
        acc.malformed += window.malformed
        acc.minutes += 1
        return done

    def current(self) -> RollupRow | None:
        """The period in progress, as it stands."""
        return None if self._acc is None else self._row(self._acc)

    def _row(self, acc: _Acc) -> RollupRow:
        return RollupRow(
            start_us=acc.start_us,
            period_s=self.period_s,
            devices=len(acc.devices),
            visitors=acc.visitors,
            passers_by=acc.passers_by,
            occupancy=round(acc.occupancy / max(acc.minutes, 1), 2),
            dwell_hist=tuple(acc.hist),
            fixed_excluded=acc.fixed,
            frames=acc.frames,
            malformed=acc.malformed,
            minutes=acc.minutes,
        )
