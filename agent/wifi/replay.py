"""The Wi-Fi pipeline on a capture file with no prior state (``wifi replay``, calibration).

A replay hashes every address with a random key kept nowhere, groups devices, and learns
the fixed devices *within the file only*: a device present in at least ``fixed_fraction`` of
the capture's 10-minute slots is the site's own. That needs the whole file, so a replay runs
the pipeline twice over the parsed frames: once to learn which devices are fixed, once to
count with them excluded (grouping is deterministic, so both runs see the same devices).
Learning within one file means a short capture (under an hour) never flags anything, and a
capture of a day when one person stays all day flags their phone too.

All of this is blocking work: call it from a thread when an event loop runs.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from agent.wifi.calibration import OccupancyModel
from agent.wifi.devices import SLOT_US, Device, DeviceGrouper, FixedLearner, GroupingSettings
from agent.wifi.privacy import DeviceHasher
from agent.wifi.windows import FEATURES, WindowAggregator, WindowSettings, WindowStats
from drivers.wifi.batch import iter_probe_batches
from drivers.wifi.probe import ProbeRequest


@dataclass(frozen=True, slots=True)
class Frame:
    """One pcap record as the pipeline sees it: a probe, or a count of malformed frames."""

    index: int  # the record's index in the file (the lab CSVs' ``idx``)
    ts_us: int
    probe: ProbeRequest | None
    malformed: int


@dataclass(frozen=True, slots=True)
class ReplaySettings:
    """Everything a replay depends on besides the capture and the model."""

    window: WindowSettings = field(
        default_factory=lambda: WindowSettings(window_s=600, feature_s=600)
    )
    grouping: GroupingSettings = field(default_factory=GroupingSettings)
    fixed_fraction: float = 0.7


def read_capture(path: Path, hasher: DeviceHasher | None = None) -> list[Frame]:
    """Parse every record of a pcap/pcapng file (addresses hashed with an ephemeral key).

    Uses the batch parser (drivers/wifi/batch.py: what bench/probe_parse.py measures); raises
    PcapError for a file that is not an 802.11 capture.
    """
    hasher = hasher or DeviceHasher.ephemeral(date.today())
    frames: list[Frame] = []
    for batch in iter_probe_batches(path, hasher):
        frames.extend(
            Frame(index, probe.ts_us, probe, 0)
            for index, probe in zip(batch.record.tolist(), batch.probes(), strict=True)
        )
        frames.extend(
            Frame(index, ts_us, None, 1)
            for index, ts_us in zip(
                batch.malformed_record.tolist(), batch.malformed_ts_us.tolist(), strict=True
            )
        )
    frames.sort(key=lambda frame: frame.index)
    return frames


def _run(
    frames: Sequence[Frame],
    settings: ReplaySettings,
    model: OccupancyModel,
    learner: FixedLearner,
    learn: bool,
) -> list[WindowStats]:
    grouper = DeviceGrouper(settings.grouping)
    if learn:
        aggregator = WindowAggregator(
            settings.window, grouper, is_fixed=lambda d: False, estimate=model
        )
    else:
        aggregator = WindowAggregator(
            settings.window, grouper, is_fixed=lambda d: learner.is_fixed(d.key), estimate=model
        )

    def see(device: Device, ts_us: int) -> None:
        learner.see(device.key, ts_us)

    out: list[WindowStats] = []
    for frame in frames:
        if frame.probe is None:
            out += aggregator.add_malformed(frame.malformed, frame.ts_us)
            continue
        out += aggregator.ingest(frame.probe, see if learn else None)
    out += aggregator.finish()
    return out


def replay(
    frames: Sequence[Frame], settings: ReplaySettings, model: OccupancyModel
) -> tuple[list[WindowStats], FixedLearner]:
    """The windows of a capture, and the fixed-device learner that judged it."""
    ordered = sorted(frames, key=lambda f: (f.ts_us, f.index))
    span = 1
    if ordered:
        span = ordered[-1].ts_us // SLOT_US - ordered[0].ts_us // SLOT_US + 1
    learner = FixedLearner(fraction=settings.fixed_fraction, horizon_slots=max(span, 1))
    _run(ordered, settings, model, learner, learn=True)
    return _run(ordered, settings, model, learner, learn=False), learner


def settings_for(window_s: int, model: OccupancyModel, base: ReplaySettings) -> ReplaySettings:
    """Replay settings with ``window_s`` windows and the model's feature definition."""
    window = WindowSettings(
        window_s=window_s,
        feature_s=max(model.window_s, window_s),
        visit_gap_s=base.window.visit_gap_s,
        visitor_rssi_dbm=base.window.visitor_rssi_dbm,
        visitor_dwell_s=base.window.visitor_dwell_s,
        near_rssi_dbm=model.near_rssi_dbm,
    )
    return ReplaySettings(window, base.grouping, base.fixed_fraction)


def truth_by_window(
    frames: Iterable[Frame], truth: dict[int, float], window_s: int
) -> dict[int, float]:
    """Mean counted occupancy of the probe rows in each window (window start µs -> mean)."""
    window_us = window_s * 1_000_000
    sums: dict[int, list[float]] = {}
    for frame in frames:
        value = truth.get(frame.index)
        if value is None:
            continue
        start = frame.ts_us - frame.ts_us % window_us
        acc = sums.setdefault(start, [0.0, 0.0])
        acc[0] += value
        acc[1] += 1
    return {start: total / count for start, (total, count) in sums.items()}


def iso_utc(ts_us: int) -> str:
    """ISO 8601 UTC text of a µs timestamp, whole seconds, with a Z."""
    return datetime.fromtimestamp(ts_us // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


DWELL_COLUMNS = ("dwell_lt1m", "dwell_1_5m", "dwell_5_15m", "dwell_15_30m", "dwell_30_60m")
CSV_COLUMNS = (
    "window_start",
    "devices",
    "occupancy",
    "visitors",
    "passers_by",
    "fixed_excluded",
    "frames",
    "malformed",
    *DWELL_COLUMNS,
    "dwell_ge60m",
    *(f"f_{name}" for name in FEATURES),
)


def to_csv(windows: Iterable[WindowStats]) -> str:
    """The replay's CSV: the stable columns first (window_start, devices, occupancy)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for w in windows:
        writer.writerow(
            (
                iso_utc(w.start_us),
                w.devices,
                f"{w.occupancy:.2f}",
                w.visitors,
                w.passers_by,
                w.fixed_excluded,
                w.frames,
                w.malformed,
                *w.dwell_hist,
                *(int(w.features[name]) for name in FEATURES),
            )
        )
    return out.getvalue()
