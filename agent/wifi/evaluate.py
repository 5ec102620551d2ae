"""``scripts/eval-wifi``: leave-one-day-out evaluation of the occupancy estimate on lab data.

For each day of ``lab-occupancy-dev`` (a pcap and its CSV of counted occupancy) the model is
fitted on all the other days and scored on the held-out day, following the data README's
protocol: 10-minute windows, truth = mean occupancy of the probe rows in the window, rows
without occupancy skipped, windows without rows skipped; Pearson r and mean absolute error
per day and over all windows of all days. The naive baseline (distinct source addresses per
window, linear fit on the other days) is scored the same way in the same run.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from agent.wifi.calibration import OccupancyModel, fit, pearson, read_truth
from agent.wifi.privacy import DeviceHasher
from agent.wifi.replay import ReplaySettings, read_capture, replay, truth_by_window

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared/data/wifi/lab-occupancy-dev"
WINDOW_S = 600
# The lab's fixed computers as listed in the data README. Diagnostic only: the estimator never
# sees this list; it is used to report how many of them the learner found by itself.
LISTED_FIXED = [
    "dc:fb:48:68:be:e4",
    "dc:fb:48:8c:71:fc",
    "dc:fb:48:2a:52:e0",
    "dc:fb:48:f5:c6:c2",
    "dc:fb:48:e3:ab:78",
    "dc:fb:48:00:51:90",
    "dc:fb:48:75:d8:42",
    "dc:fb:48:de:86:8d",
    "dc:fb:48:dd:c6:0b",
    "dc:fb:48:55:d5:78",
    "dc:fb:48:c2:1d:64",
    "40:ec:99:f9:34:a6",
    "40:ec:99:8e:3f:63",
    "40:ec:99:1f:3e:75",
]


@dataclass
class Day:
    """One evaluated day: per-window features, baseline counts and truth."""

    name: str
    features: list[dict[str, float]]
    naive: list[float]
    truth: list[float]
    fixed: int
    listed_seen: int
    listed_flagged: int
    other_flagged: int


def load_day(pcap: Path, csv_path: Path, settings: ReplaySettings) -> Day:
    """Run the pipeline over one day and line its windows up with the truth."""
    hasher = DeviceHasher.ephemeral(date.today())
    frames = read_capture(pcap, hasher)
    truth = truth_by_window(frames, read_truth(csv_path), WINDOW_S)
    model = OccupancyModel.uncalibrated(WINDOW_S, settings.window.near_rssi_dbm)
    windows, learner = replay(frames, settings, model)
    naive: Counter[int] = Counter()
    seen: set[tuple[int, bytes]] = set()
    for f in frames:
        if f.probe is not None:
            start = f.ts_us - f.ts_us % (WINDOW_S * 1_000_000)
            if (start, f.probe.device) not in seen:
                seen.add((start, f.probe.device))
                naive[start] += 1
    flagged = set(learner.fixed_keys())
    listed = {hasher(bytes.fromhex(m.replace(":", ""))) for m in LISTED_FIXED}
    present = {f.probe.device for f in frames if f.probe is not None}
    day = Day(
        pcap.name.split("_")[1],
        [],
        [],
        [],
        len(flagged),
        len(listed & present),
        len(listed & flagged),
        len(flagged - listed),
    )
    for w in windows:
        if w.start_us in truth:
            day.features.append(dict(w.features))
            day.naive.append(float(naive[w.start_us]))
            day.truth.append(truth[w.start_us])
    return day


def _line_fit(x: list[float], y: list[float]) -> tuple[float, float]:
    a = np.vstack([np.asarray(x), np.ones(len(x))]).T
    slope, icpt = np.linalg.lstsq(a, np.asarray(y), rcond=None)[0]
    return float(slope), float(icpt)


def evaluate(days: list[Day], near_rssi_dbm: int) -> int:
    """Print per-day and overall figures; 0 when the targets are met, 1 otherwise."""
    all_pred: list[float] = []
    all_base: list[float] = []
    all_truth: list[float] = []
    print(
        f"{'day':<12}{'windows':>8}{'r':>8}{'MAE':>7}{'base r':>8}{'base MAE':>9}"
        "   fixed flagged: listed/present, others"
    )
    for day in days:
        rest = [d for d in days if d is not day]
        model = fit(
            [f for d in rest for f in d.features],
            [t for d in rest for t in d.truth],
            window_s=WINDOW_S,
            near_rssi_dbm=near_rssi_dbm,
        )
        pred = [model(f) for f in day.features]
        slope, icpt = _line_fit(
            [n for d in rest for n in d.naive], [t for d in rest for t in d.truth]
        )
        base = [max(0.0, slope * n + icpt) for n in day.naive]
        truth = np.asarray(day.truth)
        mae = float(np.mean(np.abs(np.asarray(pred) - truth)))
        base_mae = float(np.mean(np.abs(np.asarray(base) - truth)))
        r, base_r = pearson(pred, truth), pearson(base, truth)
        print(
            f"{day.name:<12}{len(truth):>8}{r:>8.3f}{mae:>7.2f}{base_r:>8.3f}{base_mae:>9.2f}"
            f"   {day.listed_flagged:>2}/{day.listed_seen:<2} {day.other_flagged:>3}"
        )
        all_pred += pred
        all_base += base
        all_truth += day.truth
    r = pearson(all_pred, all_truth)
    mae = float(np.mean(np.abs(np.asarray(all_pred) - np.asarray(all_truth))))
    base_r = pearson(all_base, all_truth)
    base_mae = float(np.mean(np.abs(np.asarray(all_base) - np.asarray(all_truth))))
    zero_mae = float(np.mean(np.abs(np.asarray(all_truth))))
    print(f"overall  windows={len(all_truth)}  (NaN r: that day's truth is constant)")
    print(f"  estimator  r={r:.3f}  MAE={mae:.2f}   (target r>=0.9, MAE<=0.6)")
    print(f"  naive      r={base_r:.3f}  MAE={base_mae:.2f}   (distinct MACs/window, linear fit)")
    print(f"  always 0   MAE={zero_mae:.2f}")
    listed = sum(d.listed_flagged for d in days)
    seen = sum(d.listed_seen for d in days)
    others = sum(d.other_flagged for d in days)
    print(
        f"fixed devices: the learner flagged {listed} of the {seen} day-appearances of the "
        f"README's listed computers, and {others} other device-days"
    )
    return 0 if r >= 0.9 and mae <= 0.6 else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of scripts/eval-wifi."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = ap.parse_args(argv)
    pairs = []
    for pcap in sorted(args.data.glob("*.pcap")) if args.data.is_dir() else []:
        day = pcap.name.split("_")[1]
        csvs = sorted(args.data.glob(f"*_{day}_*.csv"))
        if csvs:
            pairs.append((pcap, csvs[0]))
    if len(pairs) < 3:
        print(
            f"eval-wifi: no evaluation data: need at least 3 days of pcap+csv in {args.data} "
            f"(found {len(pairs)}); see ../shared/data/README.md",
            file=sys.stderr,
        )
        return 2
    settings = ReplaySettings()
    days = [load_day(p, c, settings) for p, c in pairs]
    return evaluate(days, settings.window.near_rssi_dbm)


if __name__ == "__main__":
    raise SystemExit(main())
